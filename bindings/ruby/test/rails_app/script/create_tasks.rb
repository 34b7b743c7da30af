# frozen_string_literal: true

# bin/rails runner script/create_tasks.rb NAMESPACE NAME COUNT
#
# Creates COUNT tasks (context {"order_id": 1..COUNT}), then (when the
# enqueue subscriber is on) waits up to 10 s until their jobs were pushed, and
# prints {"task_ids": [...], "pid": ..., "enqueued": n} as the last line.
namespace, name, count = ARGV
registry = TaskerCore::TaskHandlerRegistry.new
ids = Array.new(Integer(count)) do |i|
  request = TaskerCore::TaskRequest.new(namespace: namespace, name: name, context: { "order_id" => i + 1 },
                                        initiator: "rails_app", source_system: "script/create_tasks", reason: "e2e test")
  found = registry.find_handler_for_task_request(request)
  raise "no template #{namespace}/#{name}: #{found['error']}" unless found["found"]

  Integer(registry.handler_instance(found).initialize_task(request).fetch("task_id"))
end
enqueued = if TaskerCore::Rails.config.enqueue_subscriber
             deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
             ids.count do |id|
               left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
               TaskerCore::Rails::EnqueueSubscriber.wait_for(id, timeout: [left, 0].max)
             end
           else
             0
           end
puts JSON.generate(task_ids: ids, pid: Process.pid, enqueued: enqueued)
