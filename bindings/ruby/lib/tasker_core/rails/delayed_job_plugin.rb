# frozen_string_literal: true

require "delayed_job"

module TaskerCore
  module Rails
    # config.tasker.republisher = :delayed_job: the re-publisher sweeps in
    # DelayedJob worker processes (`bin/rails jobs:work`), from the moment the
    # worker starts until it stops. Added to Delayed::Worker.plugins by the
    # Railtie when DelayedJob is loaded.
    class DelayedJobPlugin < ::Delayed::Plugin
      callbacks do |lifecycle|
        lifecycle.around(:execute) do |worker, &block|
          TaskerCore::Rails.republisher.start
          begin
            block.call(worker)
          ensure
            TaskerCore::Rails.republisher.stop
          end
        end
      end
    end
  end
end
