# frozen_string_literal: true

module Shop
  module FlakyPayment
    class PrepareChargeHandler < TaskerCore::BaseStepHandler
      def process(task, _sequence, _step)
        { "amount_cents" => 4200, "order_id" => task.context["order_id"] }
      end
    end
  end
end
