# frozen_string_literal: true

# What the benchmarks in this directory share: the build's library and
# binary, a database for a run (a SQLite file, or a schema of its own on
# TEST_DATABASE_URL's server), and a `tasker serve` for the socket
# transport.

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "tasker_core"
require "tmpdir"
require "fileutils"
require "securerandom"
require "net/http"
require "uri"
require "socket"

module BenchSupport
  BUILD = File.expand_path("../build", __dir__)
  LIB = ENV["TASKER_LIBRARY_PATH"] || File.join(BUILD, "libtasker.so")
  BIN = ENV["TASKER_BIN"] || File.join(BUILD, "tasker")
  DB = (ENV["TASKER_BENCH_DB"] || "sqlite").to_sym

  module_function

  # A fresh database URL under tmp: a SQLite file, or on PostgreSQL a new
  # schema (dropped by drop_schemas).
  def database_url(tmp)
    return "sqlite:#{File.join(tmp, "bench-#{SecureRandom.hex(4)}.db")}" if DB == :sqlite

    server = ENV.fetch("TEST_DATABASE_URL")
    schema = "tasker_bench_#{SecureRandom.hex(4)}"
    system("psql", "-q", server, "-c", "CREATE SCHEMA #{schema}", out: File::NULL) || abort("psql failed")
    schemas << schema
    uri = URI.parse(server)
    uri.query = URI.encode_www_form(URI.decode_www_form(uri.query.to_s) + [["search_path", schema]])
    uri.to_s
  end

  def schemas
    @schemas ||= []
  end

  # Drops the schemas database_url made.
  def drop_schemas
    schemas.each do |schema|
      system("psql", "-q", ENV["TEST_DATABASE_URL"], "-c", "DROP SCHEMA #{schema} CASCADE", out: File::NULL,
                                                                                          err: File::NULL)
    end
    schemas.clear
  end

  # Runs `tasker serve` on a free port against url with the templates of
  # tdir (and extra flags) while the block runs; yields its base URL.
  def with_serve(url, tdir, tmp, *extra)
    port = TCPServer.new("127.0.0.1", 0).then { |s| s.addr[1].tap { s.close } }
    log = File.join(tmp, "serve.log")
    pid = Process.spawn(BIN, "serve", "--database-url", url, "--templates", tdir, "--listen", "127.0.0.1:#{port}",
                        "--migrate", "--log-level", "warn", *extra, out: log, err: log)
    begin
      base = "http://127.0.0.1:#{port}"
      deadline = Time.now + 30
      begin
        Net::HTTP.get_response(URI("#{base}/health/ready"))
      rescue StandardError
        abort File.read(log) if Time.now > deadline
        sleep 0.1
        retry
      end
      yield base
    ensure
      Process.kill("TERM", pid)
      Process.wait(pid)
    end
  end
end
