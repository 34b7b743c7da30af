# frozen_string_literal: true

# The app's tables, created by the end-to-end tests
# (bin/rails runner db/schema.rb) in their throwaway database.
ActiveRecord::Schema.define do
  create_table :ledger_entries, if_not_exists: true do |t|
    t.bigint :task_id, null: false
    t.string :step_name, null: false
    t.integer :attempt, null: false
    t.integer :pid, null: false
    t.integer :amount_cents, null: false, default: 0
    t.timestamps
  end
  add_index :ledger_entries, %i[task_id step_name attempt], unique: true, if_not_exists: true

  # delayed_job_active_record's table (its generator's migration).
  create_table :delayed_jobs, if_not_exists: true do |t|
    t.integer :priority, default: 0, null: false
    t.integer :attempts, default: 0, null: false
    t.text :handler, null: false
    t.text :last_error
    t.datetime :run_at
    t.datetime :locked_at
    t.datetime :failed_at
    t.string :locked_by
    t.string :queue
    t.timestamps null: true
  end
  add_index :delayed_jobs, %i[priority run_at], name: "delayed_jobs_priority", if_not_exists: true
end
