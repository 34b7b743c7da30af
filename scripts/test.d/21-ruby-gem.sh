#!/usr/bin/env bash
# The tasker_core gem as a user installs it: `gem build` (which copies the Go
# source of libtasker into the gem), `gem install` into an empty GEM_HOME
# (which builds libtasker with Go: ext/tasker_core/extconf.rb), then a
# workflow with Ruby handlers run by a plain `ruby` with no TASKER_*
# environment variable set and no -I: the gem must find the libtasker it
# built, the templates in ./config/tasker/tasks and the default SQLite file.
#
# Without ruby, ruby-ffi or go it skips, except under CI=true, where it fails.
#
#   TASKER_GO_MODULE_ROOT=DIR   copy the Go source from DIR instead of this checkout
set -euo pipefail
cd "$(dirname "$0")/../.."

fail_or_skip() {
  if [[ "${CI:-}" == true ]]; then
    echo "21-ruby-gem: $1" >&2
    exit 1
  fi
  echo "21-ruby-gem: $1; skipping" >&2
  exit 0
}
command -v ruby >/dev/null || fail_or_skip "ruby is missing"
command -v gem >/dev/null || fail_or_skip "gem is missing"
command -v go >/dev/null || fail_or_skip "go is missing"
ruby -e 'require "ffi"' 2>/dev/null || fail_or_skip "ruby-ffi is missing"

start=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd bindings/ruby && gem build tasker_core.gemspec -o "$tmp/tasker_core.gem" >/dev/null 2>"$tmp/build.log") ||
  { cat "$tmp/build.log" >&2; exit 1; }
tar -xOf "$tmp/tasker_core.gem" data.tar.gz | tar -tz >"$tmp/files"
grep -qx 'ext/tasker_core/go/libtasker/main.go' "$tmp/files" ||
  { echo "21-ruby-gem: the gem does not carry the Go source of libtasker" >&2; exit 1; }
echo "21-ruby-gem: built $(du -h "$tmp/tasker_core.gem" | cut -f1) gem in $((SECONDS - start)) s"

# Every TASKER_* variable unset, for the install and the run.
unset_tasker=()
while IFS= read -r v; do unset_tasker+=(-u "$v"); done < <(env | sed -n 's/^\(TASKER_[A-Za-z0-9_]*\)=.*/\1/p')

t0=$SECONDS
mkdir "$tmp/home"
env "${unset_tasker[@]}" GEM_HOME="$tmp/home" gem install --local --no-document "$tmp/tasker_core.gem"
lib=$(find "$tmp/home" -path '*tasker_core/libtasker.so' | head -1)
[[ -n "$lib" ]] || { echo "21-ruby-gem: gem install built no libtasker.so" >&2; exit 1; }
echo "21-ruby-gem: gem install (go build of libtasker) took $((SECONDS - t0)) s"

app="$tmp/app"
mkdir -p "$app/config/tasker/tasks"
cat >"$app/config/tasker/tasks/greeting.yaml" <<'YAML'
name: greeting
namespace_name: demo
version: 1.0.0
step_templates:
  - {name: hello, handler_class: HelloHandler}
  - {name: shout, handler_class: ShoutHandler, depends_on_step: hello}
YAML
cat >"$app/run.rb" <<'RUBY'
require "tasker_core"

class HelloHandler < TaskerCore::BaseStepHandler
  def process(task, _sequence, _step)
    { "greeting" => "hello #{task.context['name']}" }
  end
end

class ShoutHandler < TaskerCore::BaseStepHandler
  def process(_task, sequence, _step)
    { "shout" => sequence["hello"]["greeting"].upcase }
  end
end

lib = TaskerCore.config.resolved_library_path
abort "libtasker not from the installed gem: #{lib}" unless lib.start_with?(ENV.fetch("GEM_HOME"))
abort "the gem was loaded from #{$LOADED_FEATURES.grep(/tasker_core\.rb/)}" unless
  $LOADED_FEATURES.grep(%r{/tasker_core\.rb\z}).all? { |f| f.start_with?(ENV.fetch("GEM_HOME")) }
task = TaskerCore.create_task("demo/greeting", { "name" => "gem" })
res = task.handle
abort "task did not complete: #{res.inspect}" unless res["status"] == "complete"
task = task.reload
abort "unexpected results: #{task.steps.map(&:results).inspect}" unless task.step("shout").results == { "shout" => "HELLO GEM" }
puts "21-ruby-gem: task #{task.id} #{task.status} with libtasker #{lib}"
RUBY
(cd "$app" && env "${unset_tasker[@]}" GEM_HOME="$tmp/home" ruby run.rb)
echo "21-ruby-gem: passed in $((SECONDS - start)) s"
