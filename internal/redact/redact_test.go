package redact

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dsnCases holds every form of connection string pgx accepts, each with a
// password ("s3cr3t..." or a variant) that must not survive.
var dsnCases = []struct{ in, want string }{
	// URLs: userinfo.
	{"mysql://tasker:s3cr3t@127.0.0.1/tasker", "mysql://tasker:xxxxx@127.0.0.1/tasker"}, // a wrong scheme is still masked
	{"postgres://u:s3cr3t@h/db", "postgres://u:xxxxx@h/db"},
	{"postgresql://u:s3cr3t@h:5432/db?sslmode=disable", "postgresql://u:xxxxx@h:5432/db?sslmode=disable"},
	{"postgres://u:s3cr%40t@h/db", "postgres://u:xxxxx@h/db"},
	{"postgres://u:s3cr3t@h1:5432,h2:5433/db", "postgres://u:xxxxx@h1:5432,h2:5433/db"},
	{"postgres://u:pa?ss#w0rd@h/db", "postgres://u:xxxxx@h/db"},
	{"postgres://u:s3c@r3t@h/db", "postgres://u:xxxxx@h/db"},
	{"postgres://u@h/db", "postgres://u@h/db"},
	{"postgres://h/db", "postgres://h/db"},
	// URLs: query parameters.
	{"postgres://h/db?password=s3cr3t", "postgres://h/db?password=xxxxx"},
	{"postgres://h/db?sslmode=verify-full&sslpassword=s3cr3t&user=u", "postgres://h/db?sslmode=verify-full&sslpassword=xxxxx&user=u"},
	{"postgres://u:pw1x@h/db?PASSWORD=s3cr3t&x=1#frag", "postgres://u:xxxxx@h/db?PASSWORD=xxxxx&x=1#frag"},
	{"postgres://h/db?pass%77ord=s3cr3t", "postgres://h/db?pass%77ord=xxxxx"},
	// Keyword/value.
	{"host=h user=u password=s3cr3t dbname=db", "host=h user=u password=xxxxx dbname=db"},
	{"host=h password = s3cr3t dbname=db", "host=h password = xxxxx dbname=db"},
	{"host=h password='s3 cr3t' sslpassword='an\\'other' dbname=db", "host=h password=xxxxx sslpassword=xxxxx dbname=db"},
	{"password=s3\\ cr3t host=h", "password=xxxxx host=h"},
	{"host=h\tpassword=s3cr3t\n", "host=h\tpassword=xxxxx\n"},
	{"host=h password='unterminated s3cr3t", "host=h password=xxxxx"},
	{"user=u", "user=u"},
	// SQLite and plain paths.
	{"sqlite:tasker.db", "sqlite:tasker.db"},
	{"sqlite:///var/lib/password=x.db", "sqlite:///var/lib/password=x.db"},
	{"file:x.db?_pragma=busy_timeout(1)", "file:x.db?_pragma=busy_timeout(1)"},
	{"tasker.db", "tasker.db"},
	{"", ""},
}

func TestDSN(t *testing.T) {
	for _, tc := range dsnCases {
		if got := DSN(tc.in); got != tc.want {
			t.Errorf("DSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSecrets(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:s3cr%40t@h/db":          "s3cr@t",
		"host=h password='an\\'other s3cr3t'": "an'other s3cr3t",
		"postgres://h/db?sslpassword=a%20b+c": "a b c",
	} {
		found := false
		for _, s := range Secrets(in) {
			found = found || s == want
		}
		if !found {
			t.Errorf("Secrets(%q) = %q, want it to hold %q", in, Secrets(in), want)
		}
	}
}

// TestErrorOfPgx feeds pgx and url.Parse the broken and valid connection
// strings users write and checks that no message keeps a password.
func TestErrorOfPgx(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:s3cr3t@h:notaport/db",
		"postgres://u:s3cr3t@h/db?password=an0ther&connect_timeout=x",
		"postgres://h/db?sslpassword=an0ther&sslmode=bogus",
		"postgres://u:s3cr%zzt@h/db",
		"host=h password=s3cr3t port=notaport",
		"host=h password='s3cr3t sslpassword=an0ther",
		"host=h sslpassword=an0ther sslmode=bogus",
	} {
		_, perr := pgxpool.ParseConfig(dsn)
		_, cerr := pgconn.ParseConfig(dsn)
		_, uerr := url.Parse(dsn)
		for _, err := range []error{perr, cerr, uerr} {
			if err == nil {
				continue
			}
			wrapped := fmt.Errorf("parse database URL %s: %w", DSN(dsn), Error(err, dsn))
			for _, secret := range []string{"s3cr3t", "an0ther", "s3cr%zzt"} {
				if strings.Contains(wrapped.Error(), secret) {
					t.Errorf("%q: message keeps %q: %s", dsn, secret, wrapped)
				}
			}
			if !errors.Is(wrapped, err) {
				t.Errorf("%q: the wrapped error is lost", dsn)
			}
		}
	}
}

func TestText(t *testing.T) {
	dsn := "postgres://u:s3cr3t@h/db?sslpassword=p%20w"
	msg := `connect to "postgres://u:s3cr3t@h/db?sslpassword=p%20w": failed for s3cr3t and p w and p%20w`
	got := Text(msg, dsn)
	for _, s := range []string{"s3cr3t", "p w", "p%20w"} {
		if strings.Contains(got, s) {
			t.Errorf("Text kept %q: %s", s, got)
		}
	}
	if Text("a short pw: ab", "postgres://u:ab@h/db") != "a short pw: ab" {
		t.Error("a two-character password mangled a message")
	}
	if Text("plain", "sqlite:x.db") != "plain" || Error(nil, "x") != nil {
		t.Error("Text or Error changed what holds no secret")
	}
	err := errors.New("no secret here")
	if Error(err, dsn) != err {
		t.Error("Error wrapped an error without a secret")
	}
	_ = context.Background()
}
