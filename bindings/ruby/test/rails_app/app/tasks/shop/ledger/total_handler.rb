# frozen_string_literal: true

module Shop
  module Ledger
    # Reads what the four parallel steps wrote.
    class TotalHandler < TaskerCore::BaseStepHandler
      def process(task, _sequence, _step)
        { "total_cents" => LedgerEntry.where(task_id: task.task_id).sum(:amount_cents) }
      end
    end
  end
end
