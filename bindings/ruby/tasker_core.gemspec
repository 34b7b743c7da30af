# frozen_string_literal: true

require_relative "lib/tasker_core/version"

# `gem build tasker_core.gemspec` inside the Tasker repository first copies
# the Go source libtasker is built from into ext/tasker_core/go (see
# ext/tasker_core/vendor_go.rb; `rake build` does the same), so that
# `gem install` can build libtasker with Go (ext/tasker_core/extconf.rb).
go_dir = File.expand_path("ext/tasker_core/go", __dir__)
repo_go_mod = File.expand_path("../../go.mod", __dir__)
if File.basename($PROGRAM_NAME) == "gem" && ARGV.first == "build" && File.file?(repo_go_mod) &&
   ENV["TASKER_VENDOR_GO"] != "0"
  require_relative "ext/tasker_core/vendor_go"
  begin
    TaskerCoreVendorGo.run(ENV["TASKER_GO_MODULE_ROOT"] || File.dirname(repo_go_mod), go_dir)
  rescue StandardError, SystemCallError => e
    # Without Go (go list) the gem is built without the Go source: it then
    # installs without libtasker (socket transport only).
    warn "tasker_core.gemspec: the Go source of libtasker is not included: #{e.message.strip}"
    require "fileutils"
    FileUtils.rm_rf(go_dir) # never ship a stale copy
  end
end

Gem::Specification.new do |spec|
  spec.name = "tasker_core"
  spec.version = TaskerCore::VERSION
  spec.summary = "Ruby task and step handlers for the Tasker workflow engine (Go core)"
  spec.description = <<~DESC
    TaskerCore lets Ruby (and Rails) applications write Tasker task and step
    handlers while the Go core orchestrates: it loads libtasker through ffi
    (embedded transport) or talks to `tasker serve` over HTTP (socket
    transport). The gem ships the Go source of libtasker and builds it with Go
    at install time (without Go, only the socket transport is available).
  DESC
  spec.authors = ["Tasker maintainers"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.0"
  spec.files = Dir.chdir(__dir__) do
    Dir["lib/**/*.rb", "lib/**/*.tt", "lib/**/*.rake", "README.md", "CHANGELOG.md",
        "ext/tasker_core/extconf.rb", "ext/tasker_core/vendor_go.rb", "ext/tasker_core/go/**/*"]
      .select { |f| File.file?(f) }
  end
  spec.extensions = ["ext/tasker_core/extconf.rb"]
  spec.require_paths = ["lib"]
  # ffi is needed by the embedded transport only, and loaded on first use.
  spec.add_dependency "ffi", ">= 1.15"
  spec.add_development_dependency "minitest", ">= 5.15"
end
