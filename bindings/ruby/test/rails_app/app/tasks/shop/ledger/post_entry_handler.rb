# frozen_string_literal: true

module Shop
  module Ledger
    # Writes one row in a transaction that holds its connection for a moment
    # (like real work would).
    class PostEntryHandler < TaskerCore::BaseStepHandler
      def process(task, _sequence, step)
        entry = LedgerEntry.transaction do
          e = LedgerEntry.create!(task_id: task.task_id, step_name: step.name, attempt: step.attempt, pid: Process.pid,
                                  amount_cents: Integer(step.handler_config.fetch("amount_cents")))
          LedgerEntry.connection.execute("SELECT pg_sleep(0.05)")
          e
        end
        { "entry_id" => entry.id }
      end
    end
  end
end
