# frozen_string_literal: true

# POST /orders {"order_id": 7} creates a shop/order_fulfillment task; the
# enqueue subscriber pushes its TaskRunnerJob. GET /tasks/:id shows the task.
class OrdersController < ApplicationController
  def create
    request = TaskerCore::TaskRequest.new(namespace: "shop", name: "order_fulfillment",
                                          context: { "order_id" => Integer(params.require(:order_id)) },
                                          initiator: "web", source_system: "rails_app", reason: "POST /orders")
    registry = TaskerCore::TaskHandlerRegistry.new
    task = registry.handler_instance(registry.find_handler_for_task_request(request)).initialize_task(request)
    render json: { task_id: task["task_id"], pid: Process.pid }, status: :created
  rescue TaskerCore::InvalidContextError => e
    render json: { error: e.message, details: e.details }, status: :unprocessable_entity
  end

  def show
    render json: TaskerCore.client.task(Integer(params[:id]))["task"]
  rescue TaskerCore::NotFoundError => e
    render json: { error: e.message }, status: :not_found
  end
end
