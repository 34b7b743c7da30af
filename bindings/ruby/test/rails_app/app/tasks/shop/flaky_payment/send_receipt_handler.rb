# frozen_string_literal: true

module Shop
  module FlakyPayment
    class SendReceiptHandler < TaskerCore::BaseStepHandler
      def process(_task, _sequence, step)
        { "receipt_for_cents" => step.dependency_results.fetch("charge_card")["charged_cents"] }
      end
    end
  end
end
