# frozen_string_literal: true

# Rollouts, their waves, the frozen host list and every state change.
# Foreman runs on PostgreSQL only, so the rules the domain enforces are
# also CHECK constraints: a row written by anything else still makes sense.
class CreateForemanPvcRollouts < ActiveRecord::Migration[6.1]
  def change
    create_table :foreman_pvc_rollouts do |t|
      t.string :name, null: false
      t.text :search, null: false
      t.string :flag_name, null: false, default: 'update_flag'
      t.boolean :flag_value, null: false, default: true
      t.string :waves, null: false
      t.integer :failure_threshold, null: false, default: 0
      t.integer :wave_timeout, null: false, default: 3600
      t.string :promotion, null: false, default: 'automatic'
      t.string :state, null: false, default: 'draft'
      t.integer :current_wave
      t.boolean :awaiting_approval, null: false, default: false
      t.text :status_reason
      t.string :created_by, null: false
      t.datetime :resolved_at
      t.integer :host_count, null: false, default: 0
      t.timestamps
    end
    add_index :foreman_pvc_rollouts, :name, unique: true
    add_index :foreman_pvc_rollouts, :state
    add_check_constraint :foreman_pvc_rollouts, "state IN ('draft','running','paused','completed','aborted')",
                         name: 'foreman_pvc_rollouts_state'
    add_check_constraint :foreman_pvc_rollouts, "promotion IN ('automatic','approved')",
                         name: 'foreman_pvc_rollouts_promotion'
    add_check_constraint :foreman_pvc_rollouts, 'failure_threshold BETWEEN 0 AND 100',
                         name: 'foreman_pvc_rollouts_threshold'
    add_check_constraint :foreman_pvc_rollouts, 'wave_timeout >= 60', name: 'foreman_pvc_rollouts_timeout'

    create_table :foreman_pvc_waves do |t|
      t.references :rollout, null: false, index: false,
                             foreign_key: { to_table: :foreman_pvc_rollouts, on_delete: :cascade }
      t.integer :position, null: false
      t.string :state, null: false, default: 'pending'
      t.datetime :started_at
      t.datetime :flag_set_at
      t.datetime :deadline_at
      t.datetime :finished_at
      t.bigint :converge_id
      t.text :converge_error
      t.text :gate_reason
      t.string :approved_by
      t.datetime :approved_at
      t.timestamps
    end
    add_index :foreman_pvc_waves, %i[rollout_id position], unique: true
    add_check_constraint :foreman_pvc_waves, "state IN ('pending','active','passed','failed','overridden')",
                         name: 'foreman_pvc_waves_state'

    # Foreman's host id and the certname at the time the search was
    # resolved: the list is frozen, and stays readable if a host is deleted
    # (so no foreign key to hosts, which would also block deleting hosts).
    create_table :foreman_pvc_wave_hosts do |t|
      t.references :wave, null: false, foreign_key: { to_table: :foreman_pvc_waves, on_delete: :cascade }
      t.references :rollout, null: false, index: false,
                             foreign_key: { to_table: :foreman_pvc_rollouts, on_delete: :cascade }
      t.integer :host_id, null: false
      t.string :hostname, null: false
      t.integer :position, null: false
      t.string :outcome, null: false, default: 'pending'
      t.text :reason
      t.bigint :report_id
      t.datetime :observed_at
    end
    add_index :foreman_pvc_wave_hosts, %i[rollout_id host_id], unique: true
    add_index :foreman_pvc_wave_hosts, %i[rollout_id position], unique: true
    add_check_constraint :foreman_pvc_wave_hosts, "outcome IN ('pending','ok','failed','unreachable')",
                         name: 'foreman_pvc_wave_hosts_outcome'

    create_table :foreman_pvc_transitions do |t|
      t.references :rollout, null: false, foreign_key: { to_table: :foreman_pvc_rollouts, on_delete: :cascade }
      t.string :event, null: false
      t.string :from_state, null: false
      t.string :to_state, null: false
      t.string :user_login, null: false
      t.text :reason
      t.datetime :created_at, null: false
    end
  end
end
