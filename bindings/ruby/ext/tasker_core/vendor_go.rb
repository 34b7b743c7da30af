# frozen_string_literal: true

# Copies the Go source libtasker is built from into ext/tasker_core/go, so
# that the gem carries it and `gem install` can build libtasker
# (extconf.rb). Run by `rake vendor_go` / `rake build` and by the gemspec
# when `gem build` runs inside the Tasker repository:
#
#   ruby ext/tasker_core/vendor_go.rb [GO_MODULE_ROOT]   # default: the repository root (../../..)
#
# What is copied: go.mod, go.sum, and every package of the module that
# ./libtasker imports (go list -deps), with all of its non-test files for
# every platform (Go, cgo, embedded files such as the SQL migrations).
# Dependencies outside the module are not copied: `go build` at install
# time takes them from the module cache or the module proxy (GOPROXY),
# verified against go.sum.

require "fileutils"
require "open3"

module TaskerCoreVendorGo
  FIELDS = %w[GoFiles CgoFiles IgnoredGoFiles EmbedFiles HFiles CFiles SFiles].freeze

  def self.run(root, dest)
    root = File.expand_path(root)
    raise "#{root} has no go.mod: not the Tasker Go module" unless File.file?(File.join(root, "go.mod"))

    go = ENV["GO"] || "go"
    format = "{{if .Module}}{{if .Module.Main}}{{.Dir}}" +
             FIELDS.map { |f| "|{{join .#{f} \",\"}}" }.join + "\n{{end}}{{end}}"
    out, err, st = Open3.capture3(go, "list", "-deps", "-f", format, "./libtasker", chdir: root)
    raise "go list failed in #{root}: #{err}" unless st.success?

    files = %w[go.mod go.sum]
    out.each_line do |line|
      dir, *lists = line.chomp.split("|", -1)
      next if dir.nil? || dir.empty?

      rel = dir == root ? "" : dir.delete_prefix("#{root}/")
      lists.flat_map { |l| l.split(",") }.reject { |f| f.empty? || f.end_with?("_test.go") }.each do |f|
        files << (rel.empty? ? f : File.join(rel, f))
      end
    end
    FileUtils.rm_rf(dest)
    files.uniq.each do |f|
      FileUtils.mkdir_p(File.dirname(File.join(dest, f)))
      FileUtils.cp(File.join(root, f), File.join(dest, f))
    end
    files.uniq.size
  end
end

if $PROGRAM_NAME == __FILE__
  root = ARGV[0] || File.expand_path("../../../..", __dir__)
  dest = File.expand_path("go", __dir__)
  n = TaskerCoreVendorGo.run(root, dest)
  puts "vendor_go: copied #{n} files of #{root} into #{dest}"
end
