package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of tasker",
		Args:  noArgs,
		RunE: wrapRun(func(_ *cobra.Command, _ []string) error {
			fmt.Fprintln(a.opts.Stdout, versionString(a.opts.Version))
			return nil
		}),
	}
}

// versionString is "tasker VERSION (go1.x, os/arch[, commit abc123[+dirty]])".
func versionString(version string) string {
	extra := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev string
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if dirty {
				rev += "+dirty"
			}
			extra = ", commit " + rev
		}
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
	}
	return fmt.Sprintf("tasker %s (%s, %s/%s%s)", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, extra)
}
