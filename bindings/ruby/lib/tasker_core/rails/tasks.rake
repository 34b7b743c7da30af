# frozen_string_literal: true

namespace :tasker do
  desc "Push TaskRunnerJob for durable queue records whose job never arrived (one sweep)"
  task republish: :environment do
    pushed = TaskerCore::Rails.republisher.sweep
    puts "re-published #{pushed.size} task(s)#{pushed.any? ? ": #{pushed.join(', ')}" : ''}"
  end
end
