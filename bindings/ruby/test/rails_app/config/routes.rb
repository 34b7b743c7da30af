# frozen_string_literal: true

Rails.application.routes.draw do
  post "/orders", to: "orders#create"
  get "/tasks/:id", to: "orders#show"
end
