# frozen_string_literal: true

module Shop
  # Task handler of shop/order_fulfillment (config/tasker/tasks/shop/order_fulfillment.yaml).
  class OrderFulfillmentHandler < TaskerCore::BaseTaskHandler
  end
end
