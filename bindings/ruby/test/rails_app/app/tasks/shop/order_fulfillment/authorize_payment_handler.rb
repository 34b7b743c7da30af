# frozen_string_literal: true

module Shop
  module OrderFulfillment
    class AuthorizePaymentHandler < TaskerCore::BaseStepHandler
      def process(_task, _sequence, step)
        order = step.dependency_results.fetch("validate_order")
        { "authorization" => "A-#{order['order_id']}" }
      end
    end
  end
end
