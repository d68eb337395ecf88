package seccomp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	mseccomp "github.com/moby/profiles/seccomp"
)

func TestParseNamesTheFieldToFix(t *testing.T) {
	for _, c := range []struct{ profile, want string }{
		{`not json`, "not valid JSON"},
		{`{}`, "defaultAction is missing"},
		{`{"defaultAction": "SCMP_ACT_NOPE"}`, `defaultAction: "SCMP_ACT_NOPE" is not an action`},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}`, "errnoRet is only for SCMP_ACT_ERRNO"},
		{`{"defaultAction": "SCMP_ACT_NOTIFY"}`, "SCMP_ACT_NOTIFY needs a notification listener"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"}`, "listenerPath"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}`, "flags"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": [], "action": "SCMP_ACT_ALLOW"}]}`, "syscalls[1]: names is empty"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "ALLOW"}]}`, `syscalls[0]: action: "ALLOW" is not an action`},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}`, "errnoRet 70000 is not an errno"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`, "syscalls[0]: args[0]: index 6"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "EQ"}]}]}`, `op "EQ"`},
	} {
		_, err := Parse([]byte(c.profile))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s): %v, want an error mentioning %q", c.profile, err, c.want)
		}
	}
}

func TestCheckRefusesConflictingRules(t *testing.T) {
	p, err := Parse([]byte(`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
	  {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
	  {"names": ["mkdir"], "action": "SCMP_ACT_KILL", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Compile(nil); err != nil {
		t.Fatalf("without CAP_SYS_ADMIN the rules agree: %v", err)
	}
	if err := p.Check(); err == nil || !strings.Contains(err.Error(), "mkdir has two rules") {
		t.Fatalf("Check: %v, want the conflict with CAP_SYS_ADMIN named", err)
	}
	if err := Default().Check(); err != nil {
		t.Fatalf("Docker's default profile: %v", err)
	}
}

// TestDockerDefaultJSONCompilesLikeBuiltin reads default.json, the file
// Docker ships, as a custom profile: it must give the builtin's program.
func TestDockerDefaultJSONCompilesLikeBuiltin(t *testing.T) {
	data, err := jsonOf(mseccomp.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Compile(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Default().Compile(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Encode()) != string(b.Encode()) {
		t.Fatal("default profile as JSON compiles to another program")
	}
}

func TestSecurityOpts(t *testing.T) {
	profile := `{"defaultAction":"SCMP_ACT_ALLOW"}`
	for _, c := range []struct {
		opts []string
		want string
		err  string
	}{
		{nil, "", ""},
		{[]string{"seccomp=unconfined"}, Unconfined, ""},
		{[]string{"seccomp=builtin"}, "", ""},
		{[]string{"seccomp=" + profile, "no-new-privileges"}, profile, ""},
		{[]string{"no-new-privileges=true"}, "", ""},
		{[]string{"seccomp=/etc/profile.json"}, "", "reads seccomp=FILE"},
		{[]string{"seccomp=unconfined", "seccomp=builtin"}, "", "given twice"},
		{[]string{"seccomp:unconfined"}, "", "not a seccomp option"},
		{[]string{"no-new-privileges=false"}, "", "always sets no_new_privs"},
		{[]string{"apparmor=unconfined"}, "", "no AppArmor profile"},
		{[]string{"label=disable"}, "", "SELinux"},
		{[]string{"systempaths=unconfined"}, "", "not supported"},
	} {
		got, err := SecurityOpts(c.opts)
		var oe *OptError
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %q %v, want %q", c.opts, got, err, c.want)
		case c.err != "" && (!errors.As(err, &oe) || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: %v, want an *OptError mentioning %q", c.opts, err, c.err)
		}
	}
}

func TestCacheCompilesOnce(t *testing.T) {
	var c Cache
	a, err := c.Compile("", dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Compile("", []string{"audit_write", "kill", "sys_chroot", "net_bind_service", "setpcap", "setfcap",
		"setuid", "setgid", "net_raw", "mknod", "fowner", "fsetid", "dac_override", "chown"})
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("the same caps in another order and spelling compiled again")
	}
	if _, err := c.Compile(`{"defaultAction": "NOPE"}`, nil); err == nil {
		t.Fatal("a bad profile compiled")
	}
}

// FuzzParse feeds profiles to Parse and Compile: they may refuse, never panic.
func FuzzParse(f *testing.F) {
	data, err := jsonOf(mseccomp.DefaultProfile())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`))
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],"syscalls":[{"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"valueTwo":1,"op":"SCMP_CMP_MASKED_EQ"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		_ = p.Check()
	})
}

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }
