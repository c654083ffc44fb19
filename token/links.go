package token

// The recipients' pages. The mails link them and the web server routes
// them; both take the paths from here.
const (
	// ConfirmPath + TOKEN is the landing page with the yes/no form.
	ConfirmPath = "/c/"
	// UnsubscribePath + TOKEN is the unsubscribe page, also the mail's
	// List-Unsubscribe URL (RFC 8058).
	UnsubscribePath = "/u/"
)

// Links returns a recipient's confirm and unsubscribe links under
// baseURL (the campaign's confirm_base_url), for the recipient and
// campaign of c; c's Purpose is ignored.
func (s *Signer) Links(baseURL string, c Claims) (confirm, unsubscribe string) {
	c.Purpose = Confirm
	confirm = baseURL + ConfirmPath + s.Sign(c)
	c.Purpose = Unsubscribe
	unsubscribe = baseURL + UnsubscribePath + s.Sign(c)
	return confirm, unsubscribe
}
