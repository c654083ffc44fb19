// Package web serves the recipients' pages (/c/TOKEN to confirm or decline,
// /u/TOKEN to unsubscribe, RFC 8058 one-click included), /healthz, /metrics
// and the operators' /admin pages.
//
// Rules the handlers keep:
//   - GET and HEAD change nothing, so mail scanners that follow every link
//     cannot answer for anyone.
//   - A token is verified before anything else; a forged, truncated or
//     wrong-purpose token gets a 404 page without a single Redis command.
//   - An answer is one call to redisstore.Store.Record, which changes the
//     state and appends the consent record atomically; a timeout or a dead
//     Redis gives a 503 page and never half an answer.
//   - Pages carry no personal data (no name, no address), so a forwarded
//     link shows nothing about its recipient, and they need no JavaScript,
//     cookies or external assets.
//   - Nothing redirects: there is no redirect target to abuse.
package web
