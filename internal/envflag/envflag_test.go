package envflag

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestEnvironmentDefaultsAndFlagsOverride(t *testing.T) {
	t.Setenv("X_NAME", "from-env")
	t.Setenv("X_N", "7")
	t.Setenv("X_D", "bogus")
	t.Setenv("X_SECRET", "hunter2")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := New(fs)
	var name, secret string
	var n int
	var d time.Duration
	s.StringVar(&name, "name", "X_NAME", "def", "a name")
	s.IntVar(&n, "n", "X_N", 1, "a number")
	s.DurationVar(&d, "d", "X_D", time.Second, "a duration")
	s.SecretVar(&secret, "secret", "X_SECRET", "a secret")
	if err := fs.Parse([]string{"-n", "9"}); err != nil {
		t.Fatal(err)
	}
	if name != "from-env" || n != 9 || d != time.Second || secret != "hunter2" {
		t.Fatalf("got name=%q n=%d d=%s secret set=%v", name, n, d, secret != "")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "X_D") {
		t.Fatalf("Err() = %v, want it to name X_D", err)
	}
	var help strings.Builder
	fs.SetOutput(&help)
	fs.PrintDefaults()
	if strings.Contains(help.String(), "hunter2") {
		t.Fatal("--help printed the secret")
	}
	if !strings.Contains(help.String(), "[$X_NAME]") {
		t.Fatalf("--help does not name the variable:\n%s", help.String())
	}
}

func TestBoolFromEnvironment(t *testing.T) {
	cases := []struct {
		env     string
		args    []string
		want    bool
		wantErr bool
	}{
		{env: "true", want: true},
		{env: "0", want: false},
		{env: "1", args: []string{"-b=false"}, want: false},
		{env: "maybe", want: false, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.env+strings.Join(c.args, ""), func(t *testing.T) {
			t.Setenv("X_B", c.env)
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			s := New(fs)
			var b bool
			s.BoolVar(&b, "b", "X_B", false, "a switch")
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			if b != c.want || (s.Err() != nil) != c.wantErr {
				t.Fatalf("b=%v err=%v, want b=%v and an error: %v", b, s.Err(), c.want, c.wantErr)
			}
		})
	}
}
