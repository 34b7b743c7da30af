# frozen_string_literal: true

module Shop
  # Task handler of shop/flaky_payment (config/tasker/tasks/shop/flaky_payment.yaml).
  class FlakyPaymentHandler < TaskerCore::BaseTaskHandler
  end
end
