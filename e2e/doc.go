// Package e2e holds the end-to-end and fault tests of repermit: the built
// binary as separate worker and web processes, a real redis-server, Mailpit
// or an SMTP sink in the test process, and a real HTTP client following the
// links of the real mails.
//
// The tests run only when REPERMIT_TEST_REDIS_URL and REPERMIT_TEST_MAILPIT
// are set (as .ci/run does); otherwise they skip, so that `go test ./...`
// passes on a machine without them.
package e2e
