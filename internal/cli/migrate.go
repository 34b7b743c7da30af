package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker/internal/store"
)

func (a *app) migrateCommand() *cobra.Command {
	cmd := groupCommand("migrate", "Apply, revert or list database schema migrations")
	cmd.Long = `Apply, revert or list the database schema migrations. The database is
opened without migrating it (for SQLite too), so status shows the truth.`

	var upSteps int
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply pending migrations (all, or --steps N)",
		Args:  noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			if upSteps < 0 {
				return usageErrorf("--steps cannot be negative")
			}
			return a.withStore(cmd.Context(), func(st store.Store) error {
				done, err := st.MigrateUp(cmd.Context(), upSteps)
				a.printMigrations("applied", done)
				if err != nil {
					return err
				}
				if len(done) == 0 {
					fmt.Fprintf(a.opts.Stdout, "%s is up to date\n", a.databaseLabel())
				}
				return nil
			})
		}),
	}
	up.Flags().IntVar(&upSteps, "steps", 0, "apply at most N migrations (0 = all)")

	var downSteps int
	var downAll bool
	down := &cobra.Command{
		Use:   "down",
		Short: "Revert the newest migration (or --steps N, or --all)",
		Long: `Revert applied migrations, newest first: one by default, N with --steps N,
every one with --all. Reverting drops tables and their data.`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			switch {
			case downAll && cmd.Flags().Changed("steps"):
				return usageErrorf("use --steps or --all, not both")
			case downSteps <= 0 && !downAll:
				return usageErrorf("--steps must be positive (use --all to revert every migration)")
			}
			n := downSteps
			if downAll {
				n = 0
			}
			return a.withStore(cmd.Context(), func(st store.Store) error {
				done, err := st.MigrateDown(cmd.Context(), n)
				a.printMigrations("reverted", done)
				if err != nil {
					return err
				}
				if len(done) == 0 {
					fmt.Fprintf(a.opts.Stdout, "%s has no applied migrations\n", a.databaseLabel())
				}
				return nil
			})
		}),
	}
	down.Flags().IntVar(&downSteps, "steps", 1, "revert at most N migrations")
	down.Flags().BoolVar(&downAll, "all", false, "revert every migration")

	status := &cobra.Command{
		Use:   "status",
		Short: "List migrations and whether each is applied",
		Args:  noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(st store.Store) error {
				ms, err := st.MigrationStatus(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.opts.Stdout, "database %s (%s)\n", a.databaseLabel(), st.Dialect())
				tb := newTable("VERSION", "NAME", "STATUS")
				p := painter(useColor(a.opts.Stdout))
				for _, m := range ms {
					state, style := "pending", ansiYellow
					if m.Applied {
						state, style = "applied", ansiGreen
						if m.AppliedAt != nil {
							state += " " + fmtTime(*m.AppliedAt)
						}
					}
					tb.add([]string{fmt.Sprintf("%04d", m.Version), m.Name, state}, "", "", style)
				}
				return tb.write(a.opts.Stdout, p)
			})
		}),
	}
	cmd.AddCommand(up, down, status)
	return cmd
}

func (a *app) withStore(ctx context.Context, fn func(st store.Store) error) error {
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func (a *app) printMigrations(verb string, ms []store.Migration) {
	for _, m := range ms {
		fmt.Fprintf(a.opts.Stdout, "%s %04d_%s\n", verb, m.Version, m.Name)
	}
}
