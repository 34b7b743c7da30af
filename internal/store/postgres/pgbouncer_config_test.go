package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/store/postgres"
)

func TestPostgresConnConfig(t *testing.T) {
	for _, c := range []struct {
		url  string
		mode pgx.QueryExecMode
		jit  bool
	}{
		{"postgres://u@h/db", pgx.QueryExecModeCacheStatement, true},
		{"postgres://u@h/db?pgbouncer=true&listen_host=direct&listen_port=5433&listen_dbname=real", pgx.QueryExecModeCacheDescribe, false},
		{"postgres://u@h/db?pgbouncer=false", pgx.QueryExecModeCacheStatement, true},
		{"postgres://u@h/db?pgbouncer=true&default_query_exec_mode=simple_protocol", pgx.QueryExecModeSimpleProtocol, false},
		{"host=h user=u dbname=db pgbouncer=true", pgx.QueryExecModeCacheDescribe, false},
	} {
		cc, err := postgres.ConnConfig(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		if cc.DefaultQueryExecMode != c.mode {
			t.Errorf("%s: mode %v, want %v", c.url, cc.DefaultQueryExecMode, c.mode)
		}
		for _, p := range []string{"pgbouncer", "listen_host", "listen_port", "listen_dbname"} {
			if _, ok := cc.RuntimeParams[p]; ok {
				t.Errorf("%s: %s would be sent to the server", c.url, p)
			}
		}
		if _, jit := cc.RuntimeParams["jit"]; jit != c.jit {
			t.Errorf("%s: jit sent %v, want %v", c.url, jit, c.jit)
		}
	}
	for _, bad := range []string{"postgres://u@h/db?pgbouncer=maybe", "postgres://u@h/db?listen_port=0"} {
		if _, err := postgres.ConnConfig(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
