# frozen_string_literal: true

module TaskerCore
  module Rails
    # Access to the core's durable enqueue records (tasker_task_queue) for
    # the Republisher: claim due records with a lease, ack them after the job
    # ran. It uses the gem's client calls when the core provides them (see
    # RAILS_NEEDS.md) and otherwise, on PostgreSQL, the same two statements
    # the core's queue uses, through ruby-pg.
    module QueueStore
      # One claimed record.
      Entry = Struct.new(:task_id, :operation, :run_at, :priority, :attempts, keyword_init: true)

      # Picks the implementation for the configuration.
      def self.for(config)
        client = TaskerCore::Rails.core_client
        return Core.new(client) if client.respond_to?(:queue_claim) && client.respond_to?(:queue_ack)

        url = config.database_url.to_s
        unless url.start_with?("postgres://", "postgresql://")
          raise TaskerCore::Rails::Error, "the re-publisher needs the core's queue_claim/queue_ack calls or a PostgreSQL " \
                                           "database_url (got #{url.empty? ? 'none' : url.sub(/:[^:@\/]*@/, ':***@')})"
        end
        Postgres.new(url)
      end

      # Through the gem's client (both transports).
      class Core
        def initialize(client)
          @client = client
        end

        def claim(owner:, limit:, lease:, grace:)
          res = @client.queue_claim(owner: owner, limit: limit, lease_seconds: lease, grace_seconds: grace)
          entries = res.is_a?(Hash) ? (res["entries"] || res[:entries]) : res
          Array(entries).map do |e|
            e = e.transform_keys(&:to_s)
            Entry.new(task_id: Integer(e["task_id"]), operation: e["operation"], run_at: e["run_at"],
                      priority: e["priority"], attempts: e["attempts"])
          end
        end

        def ack(task_id, owner)
          res = @client.queue_ack(task_id, owner)
          res.is_a?(Hash) ? !!(res["acked"] || res[:acked]) : !!res
        end
      end

      # Direct SQL on PostgreSQL: the stop-gap until the core exposes the
      # calls. The statements mirror the core's QueueClaim / QueueAck.
      class Postgres
        CLAIM = <<~SQL
          UPDATE tasker_task_queue
             SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2::float8),
                 attempts = attempts + 1, updated_at = now()
           WHERE task_id IN (
                 SELECT task_id FROM tasker_task_queue
                  WHERE run_at <= now() - make_interval(secs => $3::float8)
                    AND (lease_expires_at IS NULL OR lease_expires_at < now())
                  ORDER BY priority DESC, run_at
                  LIMIT $4
                    FOR UPDATE SKIP LOCKED)
          RETURNING task_id, operation, run_at, priority, attempts
        SQL
        ACK = "DELETE FROM tasker_task_queue WHERE task_id = $1 AND lease_owner = $2"

        def initialize(url)
          require "pg"
          @url = url
          @lock = Mutex.new
        end

        def claim(owner:, limit:, lease:, grace:)
          rows = exec(CLAIM, [owner, lease.to_f, grace.to_f, Integer(limit)])
          rows.map do |r|
            Entry.new(task_id: Integer(r["task_id"]), operation: r["operation"], run_at: r["run_at"],
                      priority: Integer(r["priority"]), attempts: Integer(r["attempts"]))
          end
        end

        def ack(task_id, owner)
          exec(ACK, [Integer(task_id), owner]).cmd_tuples.positive?
        end

        def close
          @lock.synchronize do
            @conn&.close
            @conn = nil
          end
        end

        private

        def exec(sql, params)
          @lock.synchronize do
            @conn = nil if @conn&.finished? || (@conn && @conn.status != PG::CONNECTION_OK)
            @conn ||= PG.connect(@url)
            @conn.exec_params(sql, params)
          rescue PG::ConnectionBad, PG::UnableToSend
            @conn&.close
            @conn = nil
            raise
          end
        end
      end
    end
  end
end
