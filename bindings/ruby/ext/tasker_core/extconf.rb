# frozen_string_literal: true

# Builds libtasker (the Go core as a C shared library) when the gem is
# installed. It writes a Makefile that runs
#
#   go build -buildmode=c-shared -o libtasker.so ./libtasker
#
# on the Go source shipped in the gem (ext/tasker_core/go, copied from the
# Tasker repository by vendor_go.rb at `gem build`), or on the module named
# by TASKER_GO_SOURCE. `make install` puts the library in the gem's
# extension directory as tasker_core/libtasker.so (.dylib on macOS), where
# TaskerCore finds it without any setting.
#
# Needs Go (the version in go.mod, or GOTOOLCHAIN=auto to fetch it) and a
# C compiler (cgo). Dependencies come from the Go module cache or the module
# proxy (GOPROXY), checked against go.sum. Environment:
#
#   GO=/path/to/go              the go command (default: go on PATH)
#   TASKER_GO_SOURCE=DIR        build from this Go module instead of the shipped copy
#   TASKER_SKIP_LIBTASKER=1     build nothing (socket transport only, or a
#                               libtasker of your own through library_path)
#
# Without Go the install does not fail: the socket transport needs no native
# code, and the embedded transport then says that libtasker was not built
# and why (see TaskerCore::Configuration#resolved_library_path).

require "rbconfig"
require "shellwords"

def find_go
  return ENV["GO"] if ENV["GO"] && !ENV["GO"].empty?

  ENV["PATH"].to_s.split(File::PATH_SEPARATOR).each do |dir|
    path = File.join(dir, "go")
    return path if File.file?(path) && File.executable?(path)
  end
  %w[/usr/local/go/bin/go /usr/lib/go/bin/go].find { |p| File.executable?(p) }
end

darwin = RbConfig::CONFIG["host_os"] =~ /darwin/
lib = darwin ? "libtasker.dylib" : "libtasker.so"
# sitearchdir: where `make install` must put the files (RubyGems points it
# at a temporary directory that becomes the gem's extension directory).
dest = RbConfig::CONFIG["sitearchdir"]
src = ENV["TASKER_GO_SOURCE"].to_s.empty? ? File.expand_path("go", __dir__) : File.expand_path(ENV["TASKER_GO_SOURCE"])
go = find_go

skip =
  if ENV["TASKER_SKIP_LIBTASKER"].to_s =~ /\A(1|true|yes)\z/i
    "TASKER_SKIP_LIBTASKER was set at install time"
  elsif !File.file?(File.join(src, "go.mod"))
    "the Go source of libtasker is not in #{src} (build the gem with `rake build`, or set TASKER_GO_SOURCE)"
  elsif go.nil?
    "Go was not found at install time (install Go #{File.read(File.join(src, 'go.mod'))[/^go (\S+)/, 1]} or set GO=...)"
  end

q = ->(s) { Shellwords.escape(s) }
makefile =
  if skip
    warn "tasker_core: libtasker is not built: #{skip}. The socket transport works; for the embedded " \
         "transport reinstall with Go available (`gem pristine tasker_core`) or set library_path."
    <<~MAKE
      all:
      \t@echo "tasker_core: libtasker not built: #{skip.gsub('"', "'").gsub('$', '$$')}"
      install:
      \tmkdir -p #{q[dest]}/tasker_core
      \tprintf '%s\\n' #{q[skip].gsub('$', '$$')} > #{q[dest]}/tasker_core/libtasker.not-built
      clean:
      \t@true
    MAKE
  else
    <<~MAKE
      GO = #{q[go]}
      GOSRC = #{q[src]}
      LIB = #{lib}

      all: $(LIB)

      $(LIB):
      \tcd $(GOSRC) && CGO_ENABLED=1 $(GO) build -buildmode=c-shared -o "$(CURDIR)/$(LIB)" ./libtasker

      install: $(LIB)
      \tmkdir -p #{q[dest]}/tasker_core
      \tcp $(LIB) #{q[dest]}/tasker_core/$(LIB)

      clean:
      \trm -f $(LIB) libtasker.h
    MAKE
  end
File.write("Makefile", makefile)
