# frozen_string_literal: true

module Shop
  module OrderFulfillment
    class ValidateOrderHandler < TaskerCore::BaseStepHandler
      def process(task, _sequence, _step)
        { "order_id" => task.context["order_id"], "valid" => true, "pid" => Process.pid }
      end
    end
  end
end
