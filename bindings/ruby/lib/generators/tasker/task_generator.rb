# frozen_string_literal: true

require "generators/tasker_core/task_generator"

module Tasker
  module Generators
    # `rails generate tasker:task`: the old name of tasker_core:task.
    class TaskGenerator < TaskerCore::Generators::TaskGenerator
      source_root File.expand_path("../tasker_core/templates", __dir__)
      namespace "tasker:task"
    end
  end
end
