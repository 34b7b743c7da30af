# frozen_string_literal: true

namespace :tasker do
  desc "Apply the core's schema migrations to config.tasker.database_url (the server's database with :socket)"
  task migrate: :environment do
    TaskerCore::Rails::Tasks.migrate(direction: "up")
  end

  namespace :migrate do
    desc "Show the core's schema migrations and whether they are applied"
    task status: :environment do
      TaskerCore::Rails::Tasks.migrate(direction: "status")
    end
  end

  desc "Load and check every task template of config.tasker.templates_dir (no database needed)"
  task validate: :environment do
    TaskerCore::Rails::Tasks.validate
  rescue TaskerCore::Error => e
    abort "tasker:validate: #{e.message}"
  end

  desc "Explain a task: status, steps, attempts, next retry, errors (FORMAT=json for the documents)"
  task :explain, [:task_id] => :environment do |_t, args|
    abort "usage: rails tasker:explain[TASK_ID]" unless args[:task_id]
    TaskerCore::Rails::Tasks.explain(args[:task_id])
  rescue TaskerCore::NotFoundError => e
    abort "tasker:explain: #{e.message}"
  end

  desc "Push TaskRunnerJob for durable queue records whose job never arrived (one sweep)"
  task republish: :environment do
    pushed = TaskerCore::Rails.republisher.sweep
    puts "re-published #{pushed.size} task(s)#{pushed.any? ? ": #{pushed.join(', ')}" : ''}"
  end
end
