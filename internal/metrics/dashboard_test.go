package metrics_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-systems/tasker/internal/metrics"
)

// capture is a Registerer keeping what is registered.
type capture struct{ cs []prometheus.Collector }

func (c *capture) Register(col prometheus.Collector) error   { c.cs = append(c.cs, col); return nil }
func (c *capture) MustRegister(cols ...prometheus.Collector) { c.cs = append(c.cs, cols...) }
func (c *capture) Unregister(prometheus.Collector) bool      { return true }

// exportedNames lists the names of every metric tasker describes.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	var c capture
	if err := metrics.New(metrics.Options{}).Register(&c); err != nil {
		t.Fatal(err)
	}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	known := map[string]bool{}
	for _, col := range c.cs {
		ch := make(chan *prometheus.Desc, 64)
		col.Describe(ch)
		close(ch)
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				known[m[1]] = true
			}
		}
	}
	if !known["tasker_step_attempts_total"] || !known["tasker_queue_due_tasks"] {
		t.Fatalf("descriptions not read: %v", known)
	}
	return known
}

// TestGrafanaDashboard checks docs/grafana-dashboard.json: valid JSON whose
// every query parses (promtool check rules, with Grafana's variables
// replaced) and names only metrics tasker exports.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	known := exportedNames(t)
	nameRE := regexp.MustCompile(`tasker_[a-z_]+`)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
				continue
			}
			for _, name := range nameRE.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
				if !known[name] && !known[base] {
					t.Errorf("panel %q queries %s, which tasker does not export", p.Title, name)
				}
			}
			expr := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(tg.Expr)
			n++
			fmt.Fprintf(&rules, "      - record: dashboard:q%d\n        expr: %q\n", n, expr)
		}
	}
	if n < 10 {
		t.Fatalf("only %d queries in the dashboard", n)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (Debian package prometheus)")
		}
		t.Skip("promtool not found: queries not parsed")
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, rules.String())
	}
}
