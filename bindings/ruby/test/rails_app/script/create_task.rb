# frozen_string_literal: true

# bin/rails runner script/create_task.rb NAMESPACE NAME CONTEXT_JSON
#
# Creates a task the way application code does, waits (up to 5 s) until the
# enqueue subscriber pushed its TaskRunnerJob (events arrive on a poller
# thread and this process exits right after), and prints
# {"task_id":..., "pid":..., "enqueued":true|false} as the last line.
namespace, name, context = ARGV
request = TaskerCore::TaskRequest.new(namespace: namespace, name: name, context: JSON.parse(context || "{}"),
                                      initiator: "rails_app", source_system: "script/create_task", reason: "e2e test")
registry = TaskerCore::TaskHandlerRegistry.new
found = registry.find_handler_for_task_request(request)
raise "no template #{namespace}/#{name}: #{found['error']}" unless found["found"]

task = registry.handler_instance(found).initialize_task(request)
task_id = Integer(task.fetch("task_id"))
enqueued = TaskerCore::Rails.config.enqueue_subscriber && TaskerCore::Rails::EnqueueSubscriber.wait_for(task_id, timeout: 5)
puts JSON.generate(task_id: task_id, pid: Process.pid, enqueued: enqueued)
