# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"

module TaskerCore
  module Rails
    # What the rake tasks (tasks.rake) do, callable from Ruby too. Each
    # writes a report to io and returns a value; failures raise
    # TaskerCore::Error subclasses with the core's message.
    module Tasks
      module_function

      # rails tasker:migrate (direction "up") / tasker:migrate:status: the
      # core's schema migrations on config.tasker.database_url (embedded), or
      # on the server's database (socket).
      def migrate(direction: "up", io: $stdout)
        res = TaskerCore.client.migrate(direction: direction)
        list = Array(res["migrations"])
        io.puts "tasker migrate #{direction}: #{list.size} migration(s)"
        list.each { |m| io.puts "  #{m.is_a?(Hash) ? m.map { |k, v| "#{k}=#{v}" }.join(' ') : m}" }
        res
      end

      # rails tasker:validate: loads every template of templates_dir the way
      # the core does (recursively; schema, DAG and handler names checked)
      # without touching the core's database: a throwaway embedded core on a
      # temporary SQLite file, or `tasker template validate` when libtasker
      # is not available (socket deployments). Returns the number loaded.
      def validate(io: $stdout)
        dir = TaskerCore.config.templates_dir.to_s
        raise TaskerCore::ConfigurationError, "config.tasker.templates_dir #{dir.inspect} is not a directory" unless File.directory?(dir)

        n = begin
          TaskerCore.config.resolved_library_path
          validate_embedded(dir)
        rescue TaskerCore::ConfigurationError
          validate_cli(dir)
        end
        io.puts "#{n} template(s) OK in #{dir}"
        n
      end

      def validate_embedded(dir)
        Dir.mktmpdir("tasker-validate") do |tmp|
          cfg = TaskerCore.config.dup
          cfg.transport = :embedded
          cfg.templates_dir = dir
          cfg.database_url = "sqlite:#{File.join(tmp, 'validate.db')}"
          cfg.event_enqueue = false
          client = TaskerCore::Client.new(cfg)
          begin
            Integer(client.info["templates_loaded"])
          ensure
            client.close
          end
        end
      end

      def validate_cli(dir)
        bin = ENV["TASKER_BIN"] || "tasker"
        out, st = Open3.capture2e(bin, "template", "validate", dir)
        raise TaskerCore::InvalidTemplateError.new(out.strip, code: "invalid_template") unless st.success?

        out[/(\d+) templates? OK/, 1].to_i
      rescue Errno::ENOENT
        raise TaskerCore::ConfigurationError, "tasker:validate needs libtasker (embedded) or the `tasker` binary " \
                                              "(on PATH or $TASKER_BIN)"
      end

      # rails tasker:explain[ID]: the task's status and, per step, its
      # status, attempts, the next retry, the last error and every attempt
      # (when, which worker, how it ended; with the core's readiness reasons
      # when the core offers `explain`). FORMAT=json prints
      # the documents instead.
      def explain(task_id, io: $stdout, output: ENV.fetch("FORMAT", "text"))
        client = TaskerCore.client
        task = client.task(Integer(task_id))["task"]
        why = explained(client, task["task_id"])
        if output == "json"
          io.puts JSON.pretty_generate(why ? { "task" => task, "explain" => why } : { "task" => task })
          return task
        end
        io.puts "task #{task['task_id']} #{task['namespace']}/#{task['name']} #{task['version']}: #{task['status']}"
        io.puts "  context: #{JSON.generate(task['context'] || {})}"
        reasons = (why && why["steps"] || []).to_h { |s| [s["name"], s["reason"]] }
        history = attempt_history(task["task_id"])
        Array(task["steps"]).each do |st|
          line = format("  %-24s %-18s attempts %s/%s", st["name"], st["status"], st["attempts"], st["max_attempts"])
          line += "  next retry #{st['next_retry_at']}" if st["next_retry_at"]
          io.puts line
          err = st["error"]
          io.puts "      error: #{err['class']}: #{err['message']}" if err.is_a?(Hash) && err["message"]
          io.puts "      #{reasons[st['name']]}" if reasons[st["name"]]
          history.fetch(st["name"], []).each do |a|
            e = a["error"].is_a?(Hash) ? ": #{a['error']['class']}: #{a['error']['message']}" : ""
            io.puts "      attempt #{a['attempt']} #{a['started_at']} #{a['worker']} -> #{a['status']}#{e}"
          end
        end
        task
      end

      # {"step_name" => [attempt hashes]} from TaskerCore.attempts (the
      # transitions), or {} when the core cannot say.
      def attempt_history(task_id)
        return {} unless TaskerCore.respond_to?(:attempts)

        TaskerCore.attempts(task_id).map(&:to_h).group_by { |a| a["step_name"] }
      rescue TaskerCore::Error, NoMethodError
        {}
      end

      def explained(client, task_id)
        methods = Array(client.info["methods"])
        methods.include?("explain") ? client.call("explain", { "task_id" => task_id }) : nil
      rescue TaskerCore::Error
        nil
      end
    end
  end
end
