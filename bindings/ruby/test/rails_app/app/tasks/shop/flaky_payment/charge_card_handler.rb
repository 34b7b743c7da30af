# frozen_string_literal: true

module Shop
  module FlakyPayment
    # The first attempt is rate-limited: the gateway asks to come back in 2 s.
    class ChargeCardHandler < TaskerCore::BaseStepHandler
      def process(_task, _sequence, step)
        raise TaskerCore::RetryableError.new("gateway busy (429)", retry_after: 2) if step.attempt == 1

        { "charged_cents" => step.dependency_results.fetch("prepare_charge")["amount_cents"], "attempt" => step.attempt }
      end
    end
  end
end
