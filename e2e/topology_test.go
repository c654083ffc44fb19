package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/smtpsink"
)

// The Sentinel and Cluster failover tests start redis-server processes of
// their own. They take their ports from fixed ranges (the team's agreement
// on this shared machine: 7200-7299 for these tests), a block of the range
// that is free at the time, so that two runs of the suite on one machine
// do not share a server.
const (
	sentinelPorts = 7210 // 7210-7219: master, replica, three Sentinels
	clusterPorts  = 7220 // 7220-7259: six cluster nodes (and their bus ports +10000)
)

// redisServerBin finds redis-server, or skips the test loudly (fails it
// where CI requires the binary).
func redisServerBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REPERMIT_TEST_REDIS_SERVER") == "required" {
			t.Fatal("redis-server is not installed, and REPERMIT_TEST_REDIS_SERVER=required")
		}
		t.Skip("SKIPPED: redis-server is not installed; this test starts servers of its own (CI sets REPERMIT_TEST_REDIS_SERVER=required)")
	}
	return bin
}

// portBlock returns the first of n consecutive ports in [from, to) that
// are free, with their cluster bus ports (+10000) when bus is set.
func portBlock(t *testing.T, from, to, n int, bus bool) int {
	t.Helper()
	free := func(p int) bool {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		ln.Close()
		return true
	}
next:
	for base := from; base+n <= to; base += n {
		for p := base; p < base+n; p++ {
			if !free(p) || (bus && !free(p+10000)) {
				continue next
			}
		}
		return base
	}
	t.Fatalf("no %d free ports in %d-%d", n, from, to-1)
	return 0
}

// node is a redis-server (or Sentinel) process of the test's own.
type node struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *node) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

// kill sends SIGKILL, as a crash of the machine would.
func (n *node) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// startNode starts redis-server on port with its files in dir/<port> and
// waits until it answers PING. conf, when set, is written to a config
// file that comes first on the command line (Sentinel needs one it can
// rewrite).
func startNode(t *testing.T, bin, dir string, port int, conf string, args ...string) *node {
	t.Helper()
	d := filepath.Join(dir, strconv.Itoa(port))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(d, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	var argv []string
	if conf != "" {
		cf := filepath.Join(d, "node.conf")
		if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		argv = append(argv, cf)
	}
	argv = append(argv, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", d,
		"--save", "", "--appendonly", "no")
	argv = append(argv, args...)
	n := &node{port: port, cmd: exec.Command(bin, argv...), done: make(chan struct{})}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start redis-server on %d: %v", port, err)
	}
	go func() { n.cmd.Wait(); logf.Close(); close(n.done) }()
	t.Cleanup(func() {
		select {
		case <-n.done:
		default:
			n.kill()
		}
		if t.Failed() {
			t.Logf("--- end of the log of the redis-server on %d:\n%s", port, tail(filepath.Join(d, "redis.log"), 15))
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: n.addr()})
	defer rdb.Close()
	waitUntil(t, 20*time.Second, fmt.Sprintf("redis-server on %d answers", port), func() bool {
		select {
		case <-n.done:
			t.Fatalf("redis-server on %d exited:\n%s", port, tail(filepath.Join(d, "redis.log"), 15))
		default:
		}
		return rdb.Ping(context.Background()).Err() == nil
	})
	return n
}

// info returns one field of INFO on addr ("" when it does not answer).
func info(addr, section, field string) string {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	s, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// TestSentinelCampaignSurvivesFailover runs a campaign through
// redis+sentinel:// against real processes (a master, its replica and
// three Sentinels): launch, the worker and status all find the master
// through the Sentinels; half way, the Sentinels fail the master over to
// the replica (SENTINEL FAILOVER), the worker follows, and every address
// is mailed with the counts adding up; the duplicates are at most the
// mails in flight (accepted, not recorded on the new master).
func TestSentinelCampaignSurvivesFailover(t *testing.T) {
	needReal(t)
	t.Parallel()
	bin := redisServerBin(t)
	dir := t.TempDir()
	base := portBlock(t, sentinelPorts, sentinelPorts+10, 5, false)
	const master = "e2emaster"
	m := startNode(t, bin, dir, base, "")
	startNode(t, bin, dir, base+1, "", "--replicaof", "127.0.0.1", strconv.Itoa(base))
	var sentinels []string
	for i := 2; i < 5; i++ {
		conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %s 2000\nsentinel failover-timeout %s 10000\n",
			master, base, master, master)
		s := startNode(t, bin, dir, base+i, conf, "--sentinel")
		sentinels = append(sentinels, s.addr())
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0]})
	defer sc.Close()
	ctx := context.Background()
	waitUntil(t, 30*time.Second, "the replica is in sync and every Sentinel sees the replica and the other Sentinels", func() bool {
		if info(m.addr(), "replication", "connected_slaves") != "1" {
			return false
		}
		for _, a := range sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: a})
			r, err := c.Replicas(ctx, master).Result()
			o, err2 := c.Sentinels(ctx, master).Result()
			c.Close()
			if err != nil || err2 != nil || len(r) != 1 || len(o) != 2 {
				return false
			}
		}
		return true
	})

	sink, c := countingSink(t, smtpsink.Options{})
	url := fmt.Sprintf("redis+sentinel://%s/0?master=%s", strings.Join(sentinels, ","), master)
	w := newWorld(t, url, "sentinel", sink.URL()+"&timeout=2s")
	const id, n = "e2e-sentinel", 4000
	path := w.writeCampaign(campaignSpec{ID: id, N: n, Deadline: "1h", PerSecond: 500})
	if rep := w.launch(path); rep.Imported != n {
		t.Fatalf("imported %d, want %d", rep.Imported, n)
	}
	// The campaign is on the master the Sentinels name, not on any other
	// Redis of the test.
	if keys := info(m.addr(), "keyspace", "db0"); !strings.HasPrefix(keys, "keys=") {
		t.Fatalf("the master holds no keys after the launch: %q", keys)
	}
	w.start("worker", "worker")
	waitUntil(t, 60*time.Second, "a third of the campaign is mailed", func() bool { return sink.Count() >= n/3 })
	if err := sc.Failover(ctx, master).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	began := time.Now()
	atFailover := sink.Count()
	want := fmt.Sprintf("127.0.0.1:%d", base+1)
	waitUntil(t, 30*time.Second, "the Sentinels name the replica as master", func() bool {
		a, err := sc.GetMasterAddrByName(ctx, master).Result()
		return err == nil && len(a) == 2 && a[0]+":"+a[1] == want
	})
	switched := time.Since(began)
	// The writes the old master took after the promotion are lost when it
	// becomes the new master's replica; what was accepted by SMTP and is
	// not recorded as sent on the new master may be mailed again. Status
	// is read first, so that the mails sent in between count as in
	// flight, not as duplicates.
	waitUntil(t, 30*time.Second, "the old master is the new master's replica", func() bool {
		return info(m.addr(), "replication", "role") == "slave" && info(m.addr(), "replication", "master_link_status") == "up"
	})
	inFlight := w.inFlight(id, sink)
	t.Logf("failed over to %s after %d mails, %s after SENTINEL FAILOVER; %d mails accepted but not recorded once the old master was a replica (in flight, lost writes included)",
		want, atFailover, switched.Round(time.Millisecond), inFlight)
	w.everyoneMailedOnceBut(id, n, c, inFlight, began)
}

// inFlight is what can still be mailed twice after a failover: mails the
// SMTP server accepted that are not recorded as sent on the Redis as it
// is now, the lost writes included. Status is read before the sink's
// count, so that the mails sent in between count as in flight, not as
// duplicates (the other order can even give a negative figure).
func (w *world) inFlight(id string, sink *smtpsink.Sink) int {
	w.t.Helper()
	st := w.status(id)
	return sink.Count() - int(st.total()-st.Counts[repermit.StatePending])
}

// everyoneMailedOnceBut waits until all n recipients are mailed and
// checks that every address got its mail, the counts add up, and no more
// addresses got two than were in flight at the failover (since: when it
// began, for the log).
func (w *world) everyoneMailedOnceBut(id string, n int, c *counter, inFlight int, since time.Time) {
	t := w.t
	t.Helper()
	final := w.mailedAll(id, n, c, 90*time.Second)
	distinct, total, dups := c.figures()
	t.Logf("after the failover: every address mailed %s later; %d addresses, %d mails, %d duplicates (in flight: %d); %s",
		time.Since(since).Round(time.Millisecond), distinct, total, dups, inFlight, final)
	checkEveryAddress(t, c, n, 0)
	if final.total() != int64(n) || final.Counts[repermit.StateSent] != int64(n) {
		t.Errorf("counts %s, want all %d sent", final, n)
	}
	if dups > inFlight {
		t.Errorf("%d duplicates, more than the %d mails in flight at the failover", dups, inFlight)
	}
}

// startCluster starts six redis-server nodes on a free block of the
// cluster ports and makes them a cluster of three masters with one replica
// each (redis-cli --cluster create); it returns the nodes by port once
// every replica is in sync.
func startCluster(t *testing.T) []*node {
	t.Helper()
	bin := redisServerBin(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("REPERMIT_TEST_REDIS_SERVER") == "required" {
			t.Fatal("redis-cli is not installed, and REPERMIT_TEST_REDIS_SERVER=required")
		}
		t.Skip("SKIPPED: redis-cli is not installed; this test makes a cluster of its own")
	}
	dir := t.TempDir()
	base := portBlock(t, clusterPorts, clusterPorts+40, 6, true)
	var nodes []*node
	var addrs []string
	for i := range 6 {
		n := startNode(t, bin, dir, base+i, "", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr())
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitUntil(t, 30*time.Second, "the cluster is ok on every node and every replica in sync", func() bool {
		synced := 0
		for _, n := range nodes {
			if info(n.addr(), "cluster", "cluster_enabled") != "1" || clusterInfo(n.addr(), "cluster_state") != "ok" {
				return false
			}
			if info(n.addr(), "replication", "master_link_status") == "up" {
				synced++
			}
		}
		return synced == 3
	})
	return nodes
}

// clusterInfo returns one field of CLUSTER INFO on addr.
func clusterInfo(addr, field string) string {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	s, err := rdb.ClusterInfo(context.Background()).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// slotMaster returns the address of the master that serves key's slot, as
// the node at addr sees it ("" when it cannot tell).
func slotMaster(addr, key string) string {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	ctx := context.Background()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return ""
	}
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		return ""
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start <= slot && slot <= r.End {
				for _, n := range sh.Nodes {
					if n.Role == "master" && n.Health == "online" {
						return fmt.Sprintf("%s:%d", n.IP, n.Port)
					}
				}
			}
		}
	}
	return ""
}

// TestClusterMasterFailoverMailsEveryone kills (SIGKILL) the master that
// holds a running campaign, on a cluster of three masters with a replica
// each; the replica takes over, and every address is still mailed: the
// writes the dead master had not passed on are lost, and the sweep
// re-feeds the recipients they concerned, so the duplicates are at most
// the mails that were accepted by SMTP and not recorded (in flight) once
// the replica took over.
func TestClusterMasterFailoverMailsEveryone(t *testing.T) {
	needReal(t)
	t.Parallel()
	nodes := startCluster(t)
	sink, c := countingSink(t, smtpsink.Options{})
	url := fmt.Sprintf("redis+cluster://%s,%s,%s/", nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
	w := newWorld(t, url, "failover", sink.URL()+"&timeout=2s")
	const id, n = "e2e-failover", 6000
	path := w.writeCampaign(campaignSpec{ID: id, N: n, Deadline: "1h", PerSecond: 1000})
	if rep := w.launch(path); rep.Imported != n {
		t.Fatalf("imported %d, want %d", rep.Imported, n)
	}
	metaKey := w.prefix + ":{" + id + "}:meta"
	victimAddr := slotMaster(nodes[0].addr(), metaKey)
	var victim, witness *node
	for _, nd := range nodes {
		switch {
		case nd.addr() == victimAddr:
			victim = nd
		case witness == nil:
			witness = nd
		}
	}
	if victim == nil {
		t.Fatalf("no node of the test serves the campaign's slot (%q)", victimAddr)
	}
	w.start("worker", "worker")
	waitUntil(t, 60*time.Second, "a third of the campaign is mailed", func() bool { return sink.Count() >= n/3 })
	victim.kill()
	killed := time.Now()
	atKill := sink.Count()
	var takeover string
	waitUntil(t, 30*time.Second, "a replica serves the campaign's slot and the cluster is ok", func() bool {
		takeover = slotMaster(witness.addr(), metaKey)
		return takeover != "" && takeover != victimAddr && clusterInfo(witness.addr(), "cluster_state") == "ok"
	})
	tookOver := time.Since(killed)
	inFlight := w.inFlight(id, sink)
	t.Logf("killed master %s after %d mails; %s took over %s later; %d mails accepted but not recorded then (in flight, lost writes included)",
		victimAddr, atKill, takeover, tookOver.Round(time.Millisecond), inFlight)
	w.everyoneMailedOnceBut(id, n, c, inFlight, killed)
}
