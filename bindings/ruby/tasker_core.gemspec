# frozen_string_literal: true

require_relative "lib/tasker_core/version"

Gem::Specification.new do |spec|
  spec.name = "tasker_core"
  spec.version = TaskerCore::VERSION
  spec.summary = "Ruby task and step handlers for the Tasker workflow engine (Go core)"
  spec.description = <<~DESC
    TaskerCore lets Ruby (and Rails) applications write Tasker task and step
    handlers while the Go core orchestrates: it loads libtasker through ffi
    (embedded transport) or talks to `tasker serve` over HTTP (socket
    transport). The gem has no native code of its own.
  DESC
  spec.authors = ["Tasker maintainers"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.0"
  spec.files = Dir["lib/**/*.rb", "lib/**/*.tt", "lib/**/*.rake", "README.md"]
  spec.require_paths = ["lib"]
  # ffi is needed by the embedded transport only, and loaded on first use.
  spec.add_dependency "ffi", ">= 1.15"
  spec.add_development_dependency "minitest", ">= 5.15"
end
