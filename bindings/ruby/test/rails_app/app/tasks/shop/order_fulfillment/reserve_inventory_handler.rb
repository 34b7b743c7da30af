# frozen_string_literal: true

module Shop
  module OrderFulfillment
    class ReserveInventoryHandler < TaskerCore::BaseStepHandler
      def process(_task, _sequence, step)
        order = step.dependency_results.fetch("validate_order")
        { "reservation" => "R-#{order['order_id']}" }
      end
    end
  end
end
