// Package envflag defines command-line flags whose defaults come from
// environment variables, so that every setting can be given either way and
// flags override the environment. --help names each flag's variable.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Set defines flags on a flag.FlagSet with defaults from the environment.
// It is not safe for concurrent use.
type Set struct {
	*flag.FlagSet
	errs []error
}

// New wraps fs.
func New(fs *flag.FlagSet) *Set { return &Set{FlagSet: fs} }

// usage appends the variable's name to a flag's help text.
func usage(env, text string) string {
	if env == "" {
		return text
	}
	return fmt.Sprintf("%s [$%s]", text, env)
}

func lookup(env string) (string, bool) {
	if env == "" {
		return "", false
	}
	return os.LookupEnv(env)
}

// StringVar defines a string flag stored in p, defaulting to $env, else def.
func (s *Set) StringVar(p *string, name, env, def, text string) {
	if v, ok := lookup(env); ok {
		def = v
	}
	s.FlagSet.StringVar(p, name, def, usage(env, text))
}

// SecretVar defines a string flag like StringVar with no default, whose
// value --help never prints.
func (s *Set) SecretVar(p *string, name, env, text string) {
	if v, ok := lookup(env); ok {
		*p = v
	}
	s.FlagSet.Var((*secretValue)(p), name, usage(env, text))
}

type secretValue string

func (v *secretValue) String() string     { return "" }
func (v *secretValue) Set(x string) error { *v = secretValue(x); return nil }

// IntVar defines an int flag stored in p, defaulting to $env, else def.
func (s *Set) IntVar(p *int, name, env string, def int, text string) {
	if v, ok := lookup(env); ok {
		if n, err := strconv.Atoi(v); err != nil {
			s.bad(env, v, "a whole number")
		} else {
			def = n
		}
	}
	s.FlagSet.IntVar(p, name, def, usage(env, text))
}

// DurationVar defines a duration flag stored in p, defaulting to $env,
// else def.
func (s *Set) DurationVar(p *time.Duration, name, env string, def time.Duration, text string) {
	if v, ok := lookup(env); ok {
		if d, err := time.ParseDuration(v); err != nil {
			s.bad(env, v, "a duration such as 30s or 24h")
		} else {
			def = d
		}
	}
	s.FlagSet.DurationVar(p, name, def, usage(env, text))
}

// BoolVar defines a bool flag stored in p, defaulting to $env (true,
// false, 1, 0 and the other forms strconv.ParseBool reads), else def.
func (s *Set) BoolVar(p *bool, name, env string, def bool, text string) {
	if v, ok := lookup(env); ok {
		if b, err := strconv.ParseBool(v); err != nil {
			s.bad(env, v, "true or false")
		} else {
			def = b
		}
	}
	s.FlagSet.BoolVar(p, name, def, usage(env, text))
}

func (s *Set) bad(env, v, want string) {
	s.errs = append(s.errs, fmt.Errorf("$%s=%q: want %s", env, v, want))
}

// Err reports every malformed environment variable met while defining
// flags, or nil.
func (s *Set) Err() error { return errors.Join(s.errs...) }
