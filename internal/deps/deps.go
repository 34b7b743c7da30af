package deps

import (
	_ "github.com/Masterminds/semver/v3"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "go.yaml.in/yaml/v3"
	_ "modernc.org/sqlite"
	_ "pgregory.net/rapid"
)
