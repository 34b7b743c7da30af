# frozen_string_literal: true

module Shop
  module OrderFulfillment
    class ShipOrderHandler < TaskerCore::BaseStepHandler
      def process(_task, _sequence, step)
        deps = step.dependency_results
        { "shipped" => true, "reservation" => deps.fetch("reserve_inventory")["reservation"],
          "authorization" => deps.fetch("authorize_payment")["authorization"] }
      end
    end
  end
end
