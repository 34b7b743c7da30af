package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

func (a *app) templateCommand() *cobra.Command {
	cmd := groupCommand("template", "List, validate and draw task templates")
	cmd.AddCommand(a.templateListCommand(), a.templateValidateCommand(), a.templateGraphCommand())
	return cmd
}

func (a *app) templateListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the templates in the templates directory",
		Args:  noArgs,
		RunE: wrapRun(func(_ *cobra.Command, _ []string) error {
			reg, err := a.loadTemplates(templatesRequired)
			if err != nil {
				return err
			}
			all := reg.List()
			if len(all) == 0 {
				fmt.Fprintf(a.opts.Stdout, "no templates in %s\n", a.templatesDir)
				return nil
			}
			tb := newTable("TEMPLATE", "STEPS", "DESCRIPTION")
			for _, t := range all {
				tb.add([]string{t.Key(), strconv.Itoa(len(t.Steps)), truncate(t.Description, 80)})
			}
			return tb.write(a.opts.Stdout, false)
		}),
	}
}

func (a *app) templateValidateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check every template of a directory and print every problem",
		Long: `Check every template under DIR (default: --templates) and print every
problem of every file, one per line, as FILE:LINE: step "NAME": FIELD: MESSAGE.
Exits 2 when there is any problem.`,
		Args: cobra.MaximumNArgs(1),
		RunE: wrapRun(func(_ *cobra.Command, args []string) error {
			dir := a.templatesDir
			if len(args) == 1 {
				dir = args[0]
			}
			reg, err := template.LoadDir(dir, a.environment)
			if err != nil {
				var terrs taskertype.TemplateErrors
				if !errors.As(err, &terrs) {
					if errors.Is(err, fs.ErrNotExist) {
						return usageErrorf("template directory %s does not exist", dir)
					}
					return usageError(err)
				}
				printProblems(a.opts.Stdout, terrs)
				files := map[string]bool{}
				for _, e := range terrs {
					files[e.File] = true
				}
				return usageErrorf("%s in %s under %s (%s OK)", plural(len(terrs), "problem"),
					plural(len(files), "file"), dir, plural(len(reg.List()), "template"))
			}
			n := len(reg.List())
			if n == 0 {
				fmt.Fprintf(a.opts.Stdout, "0 templates OK (no *.yml or *.yaml files under %s)\n", dir)
				return nil
			}
			fmt.Fprintf(a.opts.Stdout, "%s OK\n", plural(n, "template"))
			return nil
		}),
	}
}

func (a *app) templateGraphCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph NAMESPACE/NAME[@VERSION]",
		Short: "Print a template's step graph as Mermaid or Graphviz DOT",
		Example: `  tasker template graph shop/order_fulfillment --templates examples/order_fulfillment
  tasker template graph analytics/data_pipeline --templates examples/data_pipeline --format dot | dot -Tsvg > dag.svg`,
		Args: exactArgs(1),
		RunE: wrapRun(func(_ *cobra.Command, args []string) error {
			var render func(*template.Template) string
			switch strings.ToLower(format) {
			case "mermaid", "":
				render = template.Mermaid
			case "dot":
				render = template.DOT
			default:
				return usageErrorf("--format %q: want mermaid or dot", format)
			}
			ref, err := parseTemplateRef(args[0])
			if err != nil {
				return err
			}
			reg, err := a.loadTemplates(templatesRequired)
			if err != nil {
				return err
			}
			t, err := a.lookupTemplate(reg, ref)
			if err != nil {
				return err
			}
			fmt.Fprint(a.opts.Stdout, render(t))
			return nil
		}),
	}
	cmd.Flags().StringVar(&format, "format", "mermaid", "output format: mermaid or dot")
	return cmd
}
