# Multi-stage build: a static repermit binary on a distroless, non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/repermit ./cmd/repermit

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/repermit /usr/local/bin/repermit
USER nonroot:nonroot
EXPOSE 8080
ENV REPERMIT_HTTP_ADDR=0.0.0.0:8080
ENTRYPOINT ["/usr/local/bin/repermit"]
CMD ["serve"]
