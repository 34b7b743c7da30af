package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// Client.AddTemplate applies the template limits of a file load: an
// oversized file, a schema nested too deep and a $ref cycle are refused
// with a located ErrInvalidTemplate, and nothing is registered.
func TestAddTemplateLimits(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	const steps = "step_templates: [{name: a, handler_class: \"tasker:noop\"}]\n"
	for name, tc := range map[string]struct{ doc, field, msg string }{
		"file size": {doc: "name: big\n" + steps + "# " + strings.Repeat("x", template.MaxFileBytes),
			msg: "more than the limit"},
		"schema depth": {doc: "name: deep\n" + steps + "schema: " + strings.Repeat("{allOf: [", 3000) + "{}" + strings.Repeat("]}", 3000) + "\n",
			field: "schema", msg: "nested more than"},
		"ref cycle": {doc: "name: cyc\n" + steps + "schema: {$defs: {a: {$ref: '#/$defs/a'}}, $ref: '#/$defs/a'}\n",
			field: "schema", msg: "$ref cycle"},
	} {
		_, err := c.AddTemplate(name+".yml", []byte(tc.doc))
		require.True(t, errors.Is(err, tasker.ErrInvalidTemplate), "%s: %v", name, err)
		var te taskertype.TemplateErrors
		require.ErrorAs(t, err, &te, name)
		require.Equal(t, name+".yml", te[0].File, name)
		require.Equal(t, tc.field, te[0].Field, name)
		require.Contains(t, te[0].Msg, tc.msg, name)
	}
	require.Empty(t, c.Templates())

}

// A number in handler_config is stored with the step with its exact value,
// on both databases (it used to pass through a float64).
func TestHandlerConfigNumbersStoredExactly(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		_, err := c.AddTemplate("nums.yml", []byte("name: nums\nnamespace_name: test\n"+
			"step_templates: [{name: a, handler_class: \"tasker:noop\", handler_config: {n: 123456789012345678901234567890, pi: 3.14159265358979323846264338327950288}}]\n"))
		require.NoError(t, err)
		tm, err := c.Template("test", "nums", "")
		require.NoError(t, err)
		require.Equal(t, json.Number("123456789012345678901234567890"), tm.Steps[0].HandlerConfig["n"])
		task, _, err := c.InitializeTask(context.Background(), &tasker.TaskRequest{Namespace: "test", Name: "nums"})
		require.NoError(t, err)
		d, err := c.Task(context.Background(), task.ID)
		require.NoError(t, err)
		cfg := string(d.Steps[0].HandlerConfig)
		require.Contains(t, cfg, "123456789012345678901234567890")
		require.Contains(t, cfg, "3.14159265358979323846264338327950288")
	})
}
