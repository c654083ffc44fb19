package ledgerio

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// TestProofAfterRetention: a person's records in two campaigns are found
// by address after retention purged both campaigns' recipient data, and
// the bundle verifies with the public key alone.
func TestProofAfterRetention(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	signer, v := keys(t, "acme-consent")
	for _, id := range []string{"spring", "autumn"} {
		launch(t, s, id, 3)
	}
	mailed(t, s, "spring", 1)
	keepMail(t, s, "spring", 0, "en")
	keepMail(t, s, "spring", 0, "de")
	answer(t, s, "spring", 0, repermit.StateDeclined)
	answer(t, s, "spring", 1, repermit.StateConfirmed, "yoga", "events")
	answer(t, s, "spring", 1, repermit.StateConfirmed, "yoga")
	answer(t, s, "autumn", 1, repermit.StateUnsubscribed)
	for _, id := range []string{"spring", "autumn"} {
		if err := s.SetStatus(ctx, id, repermit.StatusFinished, repermit.StatusRunning); err != nil {
			t.Fatal(err)
		}
		if err := s.PurgeRecipients(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if rec, err := s.Recipient(ctx, "spring", 1); repermit.ErrorCode(err) != repermit.ENOTFOUND && (err != nil || rec.Email != "") {
		t.Fatalf("after retention recipient 1 is %+v, %v; want no address", rec, err)
	}

	res, err := Proof(ctx, s, " R1@Example.COM", "", signer, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	data, err := res.Bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	proven, b, err := consentlog.VerifyBundle(data, v)
	if err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	if b.Address != "r1@example.com" || len(proven) != 3 {
		t.Fatalf("bundle of %s with %d records, want r1@example.com with 3", b.Address, len(proven))
	}
	// Campaigns in id order: autumn, then spring's two.
	want := []struct {
		campaign string
		answer   repermit.State
		topics   string
		before   string
	}{
		{"autumn", repermit.StateUnsubscribed, "", ""},
		{"spring", repermit.StateConfirmed, "yoga,events", ""},
		{"spring", repermit.StateConfirmed, "yoga", "yoga,events"},
	}
	for i, w := range want {
		p := proven[i]
		if p.Record.Campaign != w.campaign || p.Record.Answer != w.answer || strings.Join(p.Record.Topics, ",") != w.topics ||
			strings.Join(p.Record.TopicsBefore, ",") != w.before || p.Record.IP != "192.0.2.0" || p.Record.UserAgent != "ua" {
			t.Errorf("record %d: %+v, want %+v", i+1, p.Record, w)
		}
		if p.Wording == nil || p.Wording.Text != wordingText {
			t.Errorf("record %d: wording %+v, want the text kept verbatim", i+1, p.Wording)
		}
	}
	if len(b.Wordings) != 1 {
		t.Errorf("%d wordings, want the one shown, once", len(b.Wordings))
	}
	// The recipient data is gone, so which mails r1 got is not known any
	// more: every mail wording spring sent is in the bundle; autumn sent
	// none.
	for _, cp := range b.Campaigns {
		want := map[string]int{"spring": 2, "autumn": 0}[cp.Campaign]
		if len(cp.Mail) != want {
			t.Errorf("campaign %s: %d mail wordings, want %d", cp.Campaign, len(cp.Mail), want)
		}
	}

	only, err := Proof(ctx, s, "r1@example.com", "autumn", signer, t0.Add(2*time.Hour))
	if err != nil || len(only.Bundle.Campaigns) != 1 || only.Bundle.Campaigns[0].Campaign != "autumn" {
		t.Errorf("--campaign autumn: %+v, %v", only, err)
	}
	none, err := Proof(ctx, s, "nobody@example.com", "", signer, t0.Add(2*time.Hour))
	if err != nil || len(none.Bundle.Campaigns) != 0 {
		t.Errorf("unknown address: %+v, %v", none, err)
	}
	if _, err := Proof(ctx, s, "not an address", "", signer, t0); repermit.ErrorCode(err) != repermit.EINVALID {
		t.Errorf("bad address: %v, want EINVALID", err)
	}
}

// TestProofBundleRejectsAnyChangedByte flips every byte of a bundle (and
// sets a sample of bytes to other values): each changed bundle is refused.
func TestProofBundleRejectsAnyChangedByte(t *testing.T) {
	r := redistest.New(t)
	s := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	signer, v := keys(t, "acme-consent")
	launch(t, s, "spring", 40)
	mailed(t, s, "spring", 8)
	initial := keepMail(t, s, "spring", 0, "en")
	keepMail(t, s, "spring", 1, "en") // not sent to r7
	keepMail(t, s, "spring", 0, "de") // nor this
	for i := range 40 {
		answer(t, s, "spring", i, repermit.StateConfirmed, "yoga")
	}
	answer(t, s, "spring", 7, repermit.StateUnsubscribed)
	res, err := Proof(ctx, s, "r7@example.com", "", signer, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	data, err := res.Bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := consentlog.VerifyBundle(data, v); err != nil {
		t.Fatalf("intact bundle: %v", err)
	}
	// r7 unsubscribed, which erased their locale and name with the
	// address: every mail wording the campaign sent is in the bundle.
	if m := res.Bundle.Campaigns[0].Mail; len(m) != 3 {
		t.Fatalf("%d mail wordings in r7's bundle, want all 3", len(m))
	}
	// r8 got the initial mail in English; after the answer their record
	// no longer says how many mails they got, but still their locale: the
	// English wordings, the initial one verbatim, and not the German one.
	r8, err := Proof(ctx, s, "r8@example.com", "", signer, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	m := r8.Bundle.Campaigns[0].Mail
	if len(m) != 2 || !slices.ContainsFunc(m, func(w consentlog.Wording) bool { return w.Text == initial }) {
		t.Fatalf("mail wordings in r8's bundle: %+v, want the 2 in en, the initial one:\n%s", m, initial)
	}
	for _, w := range m {
		if !strings.Contains(w.Text, "\nlocale: en\n") {
			t.Errorf("r8's bundle holds a mail wording of another locale:\n%s", w.Text)
		}
	}
	// One byte of the mail's text changed (the placeholder's brace): refused
	// as a mail wording that does not hash.
	data8, err := r8.Bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := consentlog.VerifyBundle(data8, v); err != nil {
		t.Fatalf("r8's intact bundle: %v", err)
	}
	at := bytes.Index(data8, []byte("{yes link}"))
	if at < 0 {
		t.Fatalf("no {yes link} placeholder in the bundle:\n%s", data8)
	}
	bad := bytes.Clone(data8)
	bad[at] = '['
	if _, _, err := consentlog.VerifyBundle(bad, v); err == nil || !strings.Contains(err.Error(), "mail wording 1: text does not hash") {
		t.Errorf("bundle with a mail wording changed: %v, want it refused as not hashing", err)
	}
	if n := len(res.Bundle.Campaigns[0].Records[0].Proof); n < 5 {
		t.Fatalf("inclusion proof of %d hashes in a log of 41, want at least 5", n)
	}
	changed := 0
	try := func(i int, to byte) {
		if data[i] == to {
			return
		}
		bad := bytes.Clone(data)
		bad[i] = to
		changed++
		if _, _, err := consentlog.VerifyBundle(bad, v); err == nil {
			t.Errorf("byte %d changed from %q to %q: bundle still verifies (context %q)", i, data[i], to, data[max(0, i-20):min(len(data), i+20)])
		}
	}
	for i := range data {
		try(i, data[i]^0x01)
		if i%5 == 0 {
			for _, to := range []byte{data[i] ^ 0x20, data[i] ^ 0x80, '0', 'A', '"', ' ', '\n'} {
				try(i, to)
			}
		}
	}
	if _, _, err := consentlog.VerifyBundle(data[:len(data)-1], v); err == nil {
		t.Error("bundle without its last byte verifies")
	}
	if _, _, err := consentlog.VerifyBundle(append(bytes.Clone(data), ' '), v); err == nil {
		t.Error("bundle with a byte appended verifies")
	}
	_, other := keys(t, "acme-consent")
	if _, _, err := consentlog.VerifyBundle(data, other); err == nil {
		t.Error("bundle verifies with another public key")
	}
	t.Logf("%d-byte bundle, %d changed copies, all refused", len(data), changed)
}

// mailed records recipient i of campaign id as sent the initial mail.
func mailed(t *testing.T, s *redisstore.Store, id string, i int64) {
	t.Helper()
	ctx := context.Background()
	errs, err := s.ClaimBatch(ctx, id, []int64{i}, 1, t0, time.Minute)
	if err != nil || errs[0] != nil {
		t.Fatalf("claim %s/%d: %v %v", id, i, err, errs)
	}
	if err := s.MarkSent(ctx, id, i, 1, t0); err != nil {
		t.Fatal(err)
	}
}

// keepMail keeps the wording of mail step (0 initial) in loc, as the
// worker does before sending it to a recipient without a name, and
// returns it.
func keepMail(t *testing.T, s *redisstore.Store, id string, step int, loc string) string {
	t.Helper()
	ctx := context.Background()
	c, err := s.Campaign(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := mailer.LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	r := &repermit.Recipient{Campaign: id, Email: "someone@example.com", Locale: loc}
	text, err := tpl.MailWording(mailer.NewData(c, r, "https://x.example/c/T", "https://x.example/u/T"), mailer.Kind(step))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(text))
	w := redisstore.MailWording{Step: step, Locale: loc, SHA256: hex.EncodeToString(sum[:])}
	if err := s.KeepMailWording(ctx, id, w, []byte(text)); err != nil {
		t.Fatal(err)
	}
	return text
}
