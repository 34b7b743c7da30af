# frozen_string_literal: true

require "rails/generators"

module TaskerCore
  module Generators
    # rails generate tasker_core:task NAMESPACE/NAME [STEP...] [--version 1.0.0] [--parallel]
    #
    # Writes the task template config/tasker/tasks/NAMESPACE/NAME.yaml, a task
    # handler app/tasks/NAMESPACE/NAME_handler.rb and one step handler per
    # step in app/tasks/NAMESPACE/NAME/STEP_handler.rb. Steps depend on the
    # previous one (a chain) unless --parallel.
    class TaskGenerator < ::Rails::Generators::NamedBase
      source_root File.expand_path("templates", __dir__)

      argument :steps, type: :array, default: %w[first_step], banner: "STEP STEP..."
      class_option :version, type: :string, default: "1.0.0", desc: "Template version (semver)"
      class_option :parallel, type: :boolean, default: false, desc: "Steps do not depend on each other"
      class_option :templates_dir, type: :string, default: "config/tasker/tasks", desc: "Where templates live"

      IDENT = /\A[a-z][a-z0-9_]*\z/

      def check_names
        parts = file_path.split("/")
        unless parts.size == 2 && parts.all? { |p| p.match?(IDENT) }
          raise Thor::Error, "NAME must be namespace/name in snake_case, e.g. shop/order_fulfillment (got #{name.inspect})"
        end
        bad = steps.reject { |s| s.match?(IDENT) }
        raise Thor::Error, "step names must be snake_case identifiers (bad: #{bad.join(', ')})" if bad.any?
        raise Thor::Error, "step names must be unique" if steps.uniq.size != steps.size
      end

      def create_template
        template "task.yaml.tt", File.join(options[:templates_dir], task_namespace, "#{task_name}.yaml")
      end

      def create_task_handler
        template "task_handler.rb.tt", File.join("app/tasks", task_namespace, "#{task_name}_handler.rb")
      end

      def create_step_handlers
        steps.each do |step|
          @step = step
          template "step_handler.rb.tt", File.join("app/tasks", task_namespace, task_name, "#{step}_handler.rb")
        end
      end

      private

      def task_namespace = file_path.split("/").first
      def task_name = file_path.split("/").last
      def task_version = options[:version]
      def task_handler_class = "#{task_namespace.camelize}::#{task_name.camelize}Handler"
      def step_handler_class(step) = "#{task_namespace.camelize}::#{task_name.camelize}::#{step.camelize}Handler"

      def depends_on(index)
        return nil if options[:parallel] || index.zero?

        steps[index - 1]
      end
    end
  end
end
