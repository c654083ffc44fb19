package redisstore_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

func TestParseEndpointKinds(t *testing.T) {
	for _, tc := range []struct {
		url, kind, desc string
		addrs           []string
	}{
		{"redis://127.0.0.1:6379/0", "single", "127.0.0.1:6379", []string{"127.0.0.1:6379"}},
		{"redis+cluster://10.0.0.1:7000,10.0.0.2:7001/", "cluster", "cluster 10.0.0.1:7000,10.0.0.2:7001", []string{"10.0.0.1:7000", "10.0.0.2:7001"}},
		{"redis+cluster://u:pw@10.0.0.1:7000", "cluster", "cluster 10.0.0.1:7000", []string{"10.0.0.1:7000"}},
		{"rediss+cluster://10.0.0.1:7000/?dial_timeout=3s", "cluster", "cluster 10.0.0.1:7000", []string{"10.0.0.1:7000"}},
		{"redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/2?master=mymaster", "sentinel", "sentinel 10.0.0.1:26379,10.0.0.2:26379 master mymaster", []string{"10.0.0.1:26379", "10.0.0.2:26379"}},
		{"redis+sentinel://:pw@10.0.0.1:26379/0?master=m&sentinel_password=spw", "sentinel", "sentinel 10.0.0.1:26379 master m", []string{"10.0.0.1:26379"}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			e, err := redisstore.ParseEndpoint(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind != tc.kind || e.String() != tc.desc || !slices.Equal(e.Addrs, tc.addrs) {
				t.Errorf("got %s %q %v, want %s %q %v", e.Kind, e, e.Addrs, tc.kind, tc.desc, tc.addrs)
			}
		})
	}
}

// TestParseEndpointRefusesWithoutEchoingCredentials: every bad URL is
// EINVALID, says what is wrong, and holds neither user nor password.
func TestParseEndpointRefusesWithoutEchoingCredentials(t *testing.T) {
	const user, pass = "opsuser", "Hunter2Secret"
	cred := user + ":" + pass + "@"
	for _, tc := range []struct{ url, want string }{
		{"redis+cluster://" + cred + "10.0.0.1:7000/3", "database 0 only"},
		{"redis+cluster://" + cred + "10.0.0.1:7000,,10.0.0.2:7000/", "empty host"},
		{"redis+cluster://" + cred + "10.0.0.1:port/", "port"},
		{"redis+cluster://" + cred + "10.0.0.1:7000/?master=x", "redis+sentinel"},
		{"redis+sentinel://" + cred + "10.0.0.1:26379/0", "master=NAME"},
		{"redis+sentinel://" + cred + "10.0.0.1:26379/zero?master=m", "zero"},
		{"redis+sentinel://" + cred + "10.0.0.1:26379/0?master=m&bogus=1", "bogus"},
		{"redis+unix://" + cred + "10.0.0.1:1/", "unsupported scheme"},
		{"http://" + cred + "10.0.0.1:1/", "scheme"},
		{"redis+cluster://" + user + ":" + pass + "%zz@10.0.0.1:7000/", "xxxxx"},
		// The Sentinels' password is in the query, not the user information.
		{"redis+sentinel://10.0.0.1:26379/0?master=m&sentinel_password=" + pass + "&bogus=1", "bogus"},
		{"redis+sentinel://" + cred + "10.0.0.1:26379/0?sentinel_password=" + pass + "#x", "master=NAME"},
		{"redis+sentinel://10.0.0.1:26379/0?master=m&sentinel_password=" + pass + "%zz", "escape"},
		{"redis+sentinel://10.0.0.1:26379/0?master=m&Sentinel%5Fpassword=" + pass + "&db=x", "xxxxx"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := redisstore.ParseEndpoint(tc.url)
			if repermit.ErrorCode(err) != repermit.EINVALID {
				t.Fatalf("err = %v, want EINVALID", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("%q does not say %q", msg, tc.want)
			}
			for _, secret := range []string{user, pass, pass[:6]} {
				if strings.Contains(msg, secret) {
					t.Errorf("%q holds %q", msg, secret)
				}
			}
		})
	}
}

// TestOpenOnACluster runs where REPERMIT_TEST_CLUSTER_URL names a Redis
// Cluster (CI starts one): a store opened on it launches, and its figures
// come from every master.
func TestOpenOnACluster(t *testing.T) {
	url := os.Getenv("REPERMIT_TEST_CLUSTER_URL")
	if url == "" {
		t.Skip("REPERMIT_TEST_CLUSTER_URL is unset")
	}
	ctx := context.Background()
	st, err := redisstore.Open(ctx, url, "tcluster"+strings.ReplaceAll(t.Name(), "/", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !strings.HasPrefix(st.Addr(), "cluster ") {
		t.Errorf("Addr = %q, want the cluster named", st.Addr())
	}
	defer st.DeleteMatching(ctx, st.Prefix()+":*")
	if _, err := st.UsedMemory(ctx); err != nil {
		t.Fatal(err)
	}
	// Keys in many slots: one per letter, so they land on every master.
	for c := 'a'; c <= 'z'; c++ {
		if err := st.AddSuppression(ctx, redisstore.ReasonImported, "c", time.Now(), repermit.AddressHash(string(c)+"@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	if mem, err := st.MemoryUnder(ctx, st.Prefix()+":*"); err != nil || mem <= 0 {
		t.Errorf("MemoryUnder = %d, %v", mem, err)
	}
}
