package redisstore

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

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

// Endpoint is a parsed REPERMIT_REDIS_URL: one server, a Redis Cluster or
// a Sentinel-managed primary.
//
//	redis://[user:pass@]host:port/db          one server (rediss:// for TLS)
//	redis+cluster://[user:pass@]host:port,host:port/
//	                                          Redis Cluster: any reachable
//	                                          nodes; the rest are discovered
//	redis+sentinel://[user:pass@]host:port,host:port/db?master=NAME
//	                                          the primary NAME that these
//	                                          Sentinels name; sentinel_password
//	                                          in the query if they need one
//
// rediss+cluster:// and rediss+sentinel:// use TLS. The user and password
// are the data nodes'; the query takes go-redis' options (dial_timeout,
// pool_size, …) as for redis://.
type Endpoint struct {
	// Kind is "single", "cluster" or "sentinel".
	Kind string
	// Addrs are the host:port pairs of the URL.
	Addrs []string

	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// ParseEndpoint parses a REPERMIT_REDIS_URL of any of the three kinds. Its
// errors are EINVALID and never repeat a user name or password.
func ParseEndpoint(raw string) (*Endpoint, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	base, kind, _ := strings.Cut(scheme, "+")
	if !ok || (base != "redis" && base != "rediss") {
		_, err := ParseURL(raw) // go-redis' own message for a bad scheme
		if err == nil {
			err = repermit.Errorf(repermit.EINVALID, "%s: unsupported scheme %q", RedactURL(raw), scheme)
		}
		return nil, err
	}
	if kind == "" {
		opt, err := ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return &Endpoint{Kind: "single", Addrs: []string{opt.Addr}, single: opt}, nil
	}
	bad := func(format string, args ...any) error {
		return repermit.Errorf(repermit.EINVALID, "%s: %s", RedactURL(raw), fmt.Sprintf(format, args...))
	}
	if kind != "cluster" && kind != "sentinel" {
		return nil, bad("unsupported scheme %q; want redis, redis+cluster or redis+sentinel", scheme)
	}
	userinfo := ""
	if u, at := credentials(raw); u != "" {
		userinfo = u + "@"
		rest = raw[at+len(u)+1:]
	}
	hostEnd := strings.IndexAny(rest, "/?#")
	hosts, tail := rest, ""
	if hostEnd >= 0 {
		hosts, tail = rest[:hostEnd], rest[hostEnd:]
	}
	path, rawQuery, _ := strings.Cut(tail, "?")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, bad("query: %s", scrubCredentials(err, raw))
	}
	master := query.Get("master")
	sentinelPass := query.Get("sentinel_password")
	query.Del("master")
	query.Del("sentinel_password")
	var addrs []string
	var opts []*redis.Options
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return nil, bad("empty host in the list")
		}
		one := base + "://" + userinfo + h + path
		if len(query) > 0 {
			one += "?" + query.Encode()
		}
		opt, err := redis.ParseURL(one)
		if err != nil {
			return nil, bad("%s", scrubCredentials(err, raw))
		}
		addrs = append(addrs, opt.Addr)
		opts = append(opts, opt)
	}
	o := opts[0]
	e := &Endpoint{Kind: kind, Addrs: addrs}
	switch kind {
	case "cluster":
		if o.DB != 0 {
			return nil, bad("a Redis Cluster has database 0 only")
		}
		if master != "" {
			return nil, bad("master= belongs to redis+sentinel://")
		}
		e.cluster = &redis.ClusterOptions{
			Addrs: addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, MinIdleConns: o.MinIdleConns, MaxRetries: o.MaxRetries,
			// go-redis reloads the slot map on MOVED, but not when a
			// master stops answering: with its default of 60 s, every
			// command for a dead master's slots kept dialing it for up to
			// a minute after its replica took over, and the send tasks
			// that failed meanwhile went past their quick retries into
			// the long backoff (TestClusterMasterFailoverMailsEveryone).
			// A reload is one CLUSTER SLOTS, made only while commands run.
			ClusterStateReloadInterval: clusterReloadInterval,
		}
	case "sentinel":
		if master == "" {
			return nil, bad("redis+sentinel:// needs ?master=NAME")
		}
		e.failover = &redis.FailoverOptions{
			MasterName: master, SentinelAddrs: addrs, SentinelPassword: sentinelPass,
			Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, MinIdleConns: o.MinIdleConns, MaxRetries: o.MaxRetries,
		}
	}
	return e, nil
}

// clusterReloadInterval bounds how long a cluster client routes commands
// by a slot map older than a failover.
const clusterReloadInterval = time.Second

// client builds the go-redis client of the endpoint: a Client, a
// ClusterClient or a failover Client.
func (e *Endpoint) client() redis.UniversalClient {
	switch e.Kind {
	case "cluster":
		return redis.NewClusterClient(e.cluster)
	case "sentinel":
		return redis.NewFailoverClient(e.failover)
	}
	return redis.NewClient(e.single)
}

// String names the endpoint for messages, never with credentials:
// "127.0.0.1:6379", "cluster 10.0.0.1:7000,10.0.0.2:7000",
// "sentinel 10.0.0.1:26379 master mymaster".
func (e *Endpoint) String() string {
	switch e.Kind {
	case "cluster":
		return "cluster " + strings.Join(e.Addrs, ",")
	case "sentinel":
		return "sentinel " + strings.Join(e.Addrs, ",") + " master " + e.failover.MasterName
	}
	return e.Addrs[0]
}

// RedactURL returns raw with its user name and password replaced, and the
// value of every query parameter that holds a password
// (sentinel_password), also when raw does not parse as a URL.
func RedactURL(raw string) string {
	if userinfo, at := credentials(raw); userinfo != "" {
		raw = raw[:at] + "xxxxx" + raw[at+len(userinfo):]
	}
	for _, v := range queryCredentials(raw) {
		raw = raw[:v.at] + "xxxxx" + raw[v.at+len(v.value):]
	}
	return raw
}

// queryCredential is the value of a query parameter that holds a
// password, as written in the URL, and where it starts.
type queryCredential struct {
	value string
	at    int
}

// queryCredentials finds the values of raw's query parameters whose name
// ends in "password" (go-redis takes none; sentinel_password is ours), by
// position, last first so that replacing one keeps the others' positions.
// It reads raw as text, so a URL that does not parse is covered too.
func queryCredentials(raw string) []queryCredential {
	q := strings.IndexByte(raw, '?')
	if q < 0 {
		return nil
	}
	query := raw[q+1:]
	if end := strings.IndexByte(query, '#'); end >= 0 {
		query = query[:end]
	}
	var out []queryCredential
	pos := q + 1
	for _, pair := range strings.Split(query, "&") {
		name, value, ok := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if ok && value != "" && strings.HasSuffix(strings.ToLower(name), "password") {
			out = append([]queryCredential{{value, pos + len(pair) - len(value)}}, out...)
		}
		pos += len(pair) + 1
	}
	return out
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
	var secrets []string
	if userinfo, _ := credentials(raw); userinfo != "" {
		secrets = append(secrets, userinfo)
		if user, pass, ok := strings.Cut(userinfo, ":"); ok {
			secrets = append(secrets, user, pass)
			if p, err := url.PathUnescape(pass); err == nil {
				secrets = append(secrets, p)
			}
		}
	}
	for _, v := range queryCredentials(raw) {
		secrets = append(secrets, v.value)
		if p, err := url.QueryUnescape(v.value); err == nil {
			secrets = append(secrets, p)
		}
	}
	if len(secrets) == 0 {
		return msg
	}
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	// A quoted piece of the message (an escape, a port) that comes from
	// a credential is dropped too.
	parts := strings.Split(msg, `"`)
	for k := 1; k < len(parts); k += 2 {
		for _, s := range secrets {
			if parts[k] != "" && strings.Contains(s, parts[k]) {
				parts[k] = "xxxxx"
			}
		}
	}
	return strings.Join(parts, `"`)
}
