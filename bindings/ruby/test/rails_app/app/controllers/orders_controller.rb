# frozen_string_literal: true

# POST /orders {"order_id": 7} creates a shop/order_fulfillment task; the
# enqueue subscriber pushes its TaskRunnerJob ({"run": "inline"} also runs it
# in the request). GET /tasks/:id shows the task.
class OrdersController < ApplicationController
  def create
    request = TaskerCore::TaskRequest.new(namespace: "shop", name: "order_fulfillment",
                                          context: { "order_id" => Integer(params.require(:order_id)) },
                                          initiator: "web", source_system: "rails_app", reason: "POST /orders")
    registry = TaskerCore::TaskHandlerRegistry.new
    task = registry.handler_instance(registry.find_handler_for_task_request(request)).initialize_task(request)
    # "run": "inline" also runs the task in this request (in this Puma
    # worker); its TaskRunnerJob finds nothing left to do, or shares the work.
    result = TaskerCore::Rails.handle(task["task_id"]) if params[:run] == "inline"
    render json: { task_id: task["task_id"], pid: Process.pid, outcome: result && result["outcome"],
                   steps_executed: result && result["steps_executed"],
                   libtasker: File.read("/proc/self/maps").include?("libtasker") }, status: :created
  rescue TaskerCore::InvalidContextError => e
    render json: { error: e.message, details: e.details }, status: :unprocessable_entity
  end

  def show
    render json: TaskerCore.client.task(Integer(params[:id]))["task"]
  rescue TaskerCore::NotFoundError => e
    render json: { error: e.message }, status: :not_found
  end
end
