package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/agent/runtime/initconf"
	"berth/internal/await"
)

func TestStopPlainSleepOnSIGTERM(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("sleeper", "sleep", "1000"))
	start := time.Now()
	st, err := c.Stop(context.Background(), 10*time.Second)
	must(t, err)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop took %v; our init should forward SIGTERM at once", d)
	}
	if st.Signal != int(syscall.SIGTERM) || st.Reason != ReasonKilled {
		t.Fatalf("status = %+v, want killed by SIGTERM", st)
	}
}

func TestStopTermIgnoringProcessIsKilledAfterGrace(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("stubborn", "sh", "-c", `trap "" TERM; echo ready; sleep 1000 & wait`))
	await.True(t, 5*time.Second, func() bool { return strings.Contains(e.logs(t, "stubborn"), "ready") }, "container not ready")
	start := time.Now()
	st, err := c.Stop(context.Background(), 300*time.Millisecond)
	must(t, err)
	d := time.Since(start)
	if d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("stop took %v, want grace (300ms) then SIGKILL", d)
	}
	if st.Code != 137 || st.Reason != ReasonKilled {
		t.Fatalf("status = %+v, want 137 Killed", st)
	}
}

func TestInitIsPID1AndReapsZombies(t *testing.T) {
	e := newEnv(t)
	// The subshell's sleep is orphaned to PID 1, which must reap it. The
	// final "true" keeps sh from exec'ing into its last command, so that
	// init, sh and sleep 1000 remain once the orphan is gone.
	c := e.run(t, e.spec("reaper", "sh", "-c", `(sleep 0.1 &); echo pid1=$(cat /proc/1/cmdline | tr '\0' ' '); sleep 1000; true`))
	await.True(t, 5*time.Second, func() bool { return strings.Contains(e.logs(t, "reaper"), "pid1=") }, "no output")
	if got := e.logs(t, "reaper"); !strings.Contains(got, "pid1="+initconf.Arg0+"\n") {
		t.Fatalf("PID 1 in the container should be our init, log: %q", got)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.Pid()))
	if !strings.HasPrefix(string(comm), initconf.Arg0) {
		t.Fatalf("PID 1 cmdline = %q, want our init", comm)
	}
	await.True(t, 5*time.Second, func() bool {
		pids, _ := c.rec.Cgroup.Pids()
		zombies := 0
		for _, p := range pids {
			if stat, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat"); err == nil && strings.Contains(string(stat), ") Z ") {
				zombies++
			}
		}
		return len(pids) == 3 && zombies == 0 // init, sh, sleep 1000
	}, "orphaned zombie not reaped")
	_, err := c.Stop(context.Background(), time.Second)
	must(t, err)
}

func TestHostnameMasksCapsAndUser(t *testing.T) {
	e := newEnv(t)
	s := e.spec("probe", "sh", "-c", `hostname; cat /proc/keys /proc/timer_list | wc -c; grep CapEff /proc/self/status; (echo x > /proc/sys/kernel/hostname) 2>/dev/null || echo ro-sys; ls /sys/firmware | wc -l`)
	s.Hostname = "web-1"
	out := e.output(t, s)
	want := fmt.Sprintf("web-1\n0\nCapEff:\t%016x\nro-sys\n0\n", CapMask(DefaultCapabilities))
	if out != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}
	u := e.spec("user", "sh", "-c", `id; grep CapEff /proc/self/status`)
	u.User = "app"
	if out := e.output(t, u); out != "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)\nCapEff:\t0000000000000000\n" {
		t.Fatalf("as app: %q", out)
	}
	n := e.spec("numeric", "id", "-u")
	n.User = "4242:4243"
	if out := e.output(t, n); out != "4242\n" {
		t.Fatalf("as 4242: %q", out)
	}
}

func TestEnvCwdRlimitsAndLoopback(t *testing.T) {
	e := newEnv(t)
	s := e.spec("envs", "sh", "-c", `echo $FOO $HOME; pwd; ulimit -n; cat /sys/class/net/lo/operstate; ls /sys/class/net`)
	s.Env = []string{"FOO=bar"}
	s.Cwd = "/work/dir"
	s.Rlimits = []Rlimit{{Type: "nofile", Soft: 321, Hard: 321}}
	out := e.output(t, s)
	if out != "bar /root\n/work/dir\n321\nunknown\nlo\n" {
		t.Fatalf("output: %q", out)
	}
	h := e.spec("hostnet", "sh", "-c", `ls /sys/class/net | wc -l`)
	h.HostNetwork = true
	if out := e.output(t, h); strings.TrimSpace(out) == "1" {
		t.Fatalf("host network should show the host's interfaces, got %q", out)
	}
}

func TestMemoryLimitReportsOOMKilled(t *testing.T) {
	e := newEnv(t)
	s := e.spec("oom", "sh", "-c", `tail /dev/zero`)
	s.Resources.MemoryBytes = 16 << 20
	c := e.run(t, s)
	st := e.wait(t, c)
	if !st.OOMKilled || st.Reason != ReasonOOMKilled {
		t.Fatalf("status = %+v, want OOMKilled", st)
	}
}

func TestPidsLimitAndStats(t *testing.T) {
	e := newEnv(t)
	fork := e.spec("forker", "sh", "-c", `for i in $(seq 40); do sleep 1000 & done; echo all-forked`)
	fork.Resources.PidsLimit = 6
	st := e.wait(t, e.run(t, fork))
	if out := e.logs(t, "forker"); st.Code == 0 || !strings.Contains(out, "can't fork") || strings.Contains(out, "all-forked") {
		t.Fatalf("pids limit not enforced: %+v %q", st, out)
	}

	s := e.spec("pids", "sh", "-c", `sleep 1000 & sleep 1000 & echo started; wait`)
	s.Resources = Resources{PidsLimit: 6, MemoryBytes: 64 << 20, NanoCPUs: 5e8, CPUShares: 512}
	c := e.run(t, s)
	await.True(t, 5*time.Second, func() bool { return strings.Contains(e.logs(t, "pids"), "started") }, "no output")
	stats, err := c.Stats()
	must(t, err)
	if stats.Pids != 3 || stats.PidsLimit != 6 {
		t.Fatalf("pids = %d of %d, want 3 (sh and two sleeps) of 6", stats.Pids, stats.PidsLimit)
	}
	if stats.MemoryLimitBytes != 64<<20 || stats.MemoryBytes == 0 || stats.CPUUsage == 0 {
		t.Fatalf("stats = %+v", stats)
	}
	if v2 := c.rec.Cgroup.Paths[""]; v2 != "" {
		max, _ := os.ReadFile(filepath.Join(v2, "cpu.max"))
		weight, _ := os.ReadFile(filepath.Join(v2, "cpu.weight"))
		if strings.TrimSpace(string(max)) != "50000 100000" || strings.TrimSpace(string(weight)) != "20" {
			t.Fatalf("cgroup v2 cpu.max %q (want 50000 100000), cpu.weight %q (want 20, from 512 shares)", max, weight)
		}
	} else {
		quota, _ := os.ReadFile(filepath.Join(c.rec.Cgroup.Paths["cpu"], "cpu.cfs_quota_us"))
		shares, _ := os.ReadFile(filepath.Join(c.rec.Cgroup.Paths["cpu"], "cpu.shares"))
		if strings.TrimSpace(string(quota)) != "50000" || strings.TrimSpace(string(shares)) != "512" {
			t.Fatalf("cpu quota %q shares %q", quota, shares)
		}
	}
	_, err = c.Stop(context.Background(), time.Second)
	must(t, err)
	if c.rec.Cgroup.Exists() {
		t.Fatal("cgroup not removed after exit")
	}
}

func TestLogRotationAndFollow(t *testing.T) {
	e := newEnv(t)
	s := e.spec("chatty", "sh", "-c", `i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done; echo go; sleep 0.3; echo end`)
	s.LogMaxBytes = 1000
	s.LogMaxFiles = 3
	c := e.run(t, s)
	var followed bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, e.rt.Logs(ctx, "chatty", true, &followed))
	e.wait(t, c)
	if !strings.HasSuffix(followed.String(), "end\n") {
		t.Fatalf("follow ended without the last line: %q", tail(followed.String()))
	}
	files, _ := filepath.Glob(filepath.Join(e.rt.logDir("chatty"), logName+"*"))
	if len(files) != 3 {
		t.Fatalf("log files = %v, want current + 2 rotated", files)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > 1000 {
			t.Fatalf("%s is %d bytes, over the 1000 limit", f, fi.Size())
		}
	}
	all := e.logs(t, "chatty")
	if strings.Contains(all, "line-0\n") || !strings.Contains(all, "line-399\ngo\nend\n") {
		t.Fatalf("rotated logs should keep only the newest output: %q", tail(all))
	}
}

func tail(s string) string {
	if len(s) > 200 {
		return "…" + s[len(s)-200:]
	}
	return s
}
