package redisstore

import (
	"errors"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
)

// ParseURL parses a redis:// or rediss:// URL as go-redis does. Its errors
// are EINVALID and never repeat the URL's user name or password: net/url
// and go-redis quote the input, password included.
func ParseURL(raw string) (*redis.Options, error) {
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "%s: %s", RedactURL(raw), scrubCredentials(err, raw))
	}
	return opt, nil
}

// RedactURL returns raw with its user name and password replaced, also when
// raw does not parse as a URL.
func RedactURL(raw string) string {
	userinfo, at := credentials(raw)
	if userinfo == "" {
		return raw
	}
	return raw[:at] + "xxxxx" + raw[at+len(userinfo):]
}

// credentials finds the user information of raw (what stands between
// "scheme://" and the last '@' of the authority) and where it starts.
func credentials(raw string) (userinfo string, at int) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return "", 0
	}
	start := i + 3
	authority := raw[start:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	j := strings.LastIndex(authority, "@")
	if j <= 0 {
		return "", 0
	}
	return authority[:j], start
}

// scrubCredentials returns err's message without the URL it may quote and
// without any part of raw's user information.
func scrubCredentials(err error, raw string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	userinfo, _ := credentials(raw)
	if userinfo == "" {
		return msg
	}
	secrets := []string{userinfo}
	if user, pass, ok := strings.Cut(userinfo, ":"); ok {
		secrets = append(secrets, user, pass)
		if p, err := url.PathUnescape(pass); err == nil {
			secrets = append(secrets, p)
		}
	}
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	// A quoted piece of the message (an escape, a port) that comes from
	// the user information is dropped too.
	parts := strings.Split(msg, `"`)
	for k := 1; k < len(parts); k += 2 {
		if parts[k] != "" && strings.Contains(userinfo, parts[k]) {
			parts[k] = "xxxxx"
		}
	}
	return strings.Join(parts, `"`)
}
