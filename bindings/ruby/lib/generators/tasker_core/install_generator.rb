# frozen_string_literal: true

require "rails/generators"

module TaskerCore
  module Generators
    # rails generate tasker_core:install
    #
    # Writes config/initializers/tasker.rb and the templates directory
    # config/tasker/tasks/; with --example (the default) also an example task
    # (template plus handlers) through tasker_core:task.
    class InstallGenerator < ::Rails::Generators::Base
      source_root File.expand_path("templates", __dir__)

      class_option :transport, type: :string, default: "embedded", enum: %w[embedded socket],
                               desc: "How the app reaches the core: embedded (libtasker) or socket (tasker serve)"
      class_option :example, type: :boolean, default: true, desc: "Also generate an example task (example/hello_world)"

      def create_initializer
        template "initializer.rb.tt", "config/initializers/tasker.rb"
      end

      def create_templates_dir
        empty_directory "config/tasker/tasks"
      end

      def create_example
        return unless options[:example]

        generate "tasker_core:task", "example/hello_world", "say_hello", "say_goodbye"
      end

      def show_next_steps
        say <<~MSG

          tasker_core is installed. Next:
            - set TASKER_DATABASE_URL (or config.tasker.database_url) and run `tasker migrate up`;
            - run Sidekiq (or any ActiveJob backend): TaskRunnerJob runs the tasks;
            - add tasks with `rails generate tasker_core:task NAMESPACE/NAME STEP...`.
        MSG
      end
    end
  end
end
