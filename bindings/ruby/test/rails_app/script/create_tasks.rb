# frozen_string_literal: true

# bin/rails runner script/create_tasks.rb NAMESPACE NAME COUNT
#
# Creates COUNT tasks (context {"order_id": 1..COUNT}) without waiting for
# their jobs and prints {"task_ids": [...], "pid": ...} as the last line.
namespace, name, count = ARGV
registry = TaskerCore::TaskHandlerRegistry.new
ids = Array.new(Integer(count)) do |i|
  request = TaskerCore::TaskRequest.new(namespace: namespace, name: name, context: { "order_id" => i + 1 },
                                        initiator: "rails_app", source_system: "script/create_tasks", reason: "e2e test")
  found = registry.find_handler_for_task_request(request)
  raise "no template #{namespace}/#{name}: #{found['error']}" unless found["found"]

  Integer(registry.handler_instance(found).initialize_task(request).fetch("task_id"))
end
puts JSON.generate(task_ids: ids, pid: Process.pid)
