# frozen_string_literal: true

require 'test_helper'

# The engine in a Rails app: loaded, its migrations run on a real
# PostgreSQL that holds a Foreman 3.13 database, its routes drawn.
class BootTest < ActiveSupport::TestCase
  TABLES = %w[foreman_pvc_rollouts foreman_pvc_waves foreman_pvc_wave_hosts foreman_pvc_transitions].freeze

  def connection
    ActiveRecord::Base.connection
  end

  test 'the engine is loaded and its migrations ran on PostgreSQL beside Foreman' do
    assert_includes Rails.application.railties.map(&:class), ForemanPvc::Engine
    assert_equal 'PostgreSQL', connection.adapter_name
    # the database is Foreman's own (the fixture), as in production
    assert connection.table_exists?('hosts'), 'not a Foreman database'
    assert_operator connection.select_value('SELECT count(*) FROM schema_migrations').to_i, :>, 400
    TABLES.each { |t| assert connection.table_exists?(t), t }
    assert_includes connection.select_values('SELECT version FROM schema_migrations'), '20261127120000'
  end

  test 'migrations carry the plugin scope so SCOPE=foreman_pvc selects them' do
    files = Dir[ForemanPvc::Engine.root.join('db/migrate/*.rb')]
    refute_empty files
    files.each { |f| assert_match(/\A\d{14}_\w+\.foreman_pvc\.rb\z/, File.basename(f)) }
  end

  test 'the database refuses rows the domain would refuse' do
    insert = lambda do |state, threshold|
      connection.execute(<<~SQL.squish)
        INSERT INTO foreman_pvc_rollouts (name, search, waves, state, failure_threshold, created_by, created_at, updated_at)
        VALUES ('r-#{state}-#{threshold}', 'name ~ web', '1, 100%', '#{state}', #{threshold}, 'alice', now(), now())
      SQL
    end
    insert.call('draft', 0)
    assert_raises(ActiveRecord::StatementInvalid) do
      connection.transaction(requires_new: true) do
        insert.call('limbo', 0)
      end
    end
    assert_raises(ActiveRecord::StatementInvalid) do
      connection.transaction(requires_new: true) do
        insert.call('draft', 101)
      end
    end
  end

  # The route table itself: recognising a path would load the controllers,
  # which need Foreman's base classes.
  def self.route_table(set)
    set.routes.map { |r| "#{r.verb} #{r.path.spec} #{r.defaults[:controller]}##{r.defaults[:action]}" }
  end

  test 'pages and API are routed' do
    ui = self.class.route_table(ForemanPvc::Engine.routes)
    assert_includes ui, 'GET /rollouts/:id(.:format) foreman_pvc/rollouts#show'
    assert_includes ui, 'POST /rollouts/:id/abort(.:format) foreman_pvc/rollouts#abort'
    api = self.class.route_table(Rails.application.routes)
    assert_includes api, 'POST /api(/:apiv)/pvc_rollouts/:id/start(.:format) api/v2/pvc_rollouts#start'
    assert_includes api, 'GET /api(/:apiv)/pvc_rollouts(.:format) api/v2/pvc_rollouts#index'
    assert_equal '/foreman_pvc/rollouts/3',
                 ForemanPvc::Engine.routes.url_helpers.rollout_path(3, script_name: '/foreman_pvc')
    assert(Rails.application.routes.routes.any? do |r|
             r.app.app == ForemanPvc::Engine && r.path.spec.to_s == '/foreman_pvc'
           end,
           'engine not mounted at /foreman_pvc')
  end
end

# Foreman removes a plugin's tables with `rake db:migrate SCOPE=foreman_pvc
# VERSION=0`: the migration must go down and up again cleanly.
class MigrationReversalTest < ActiveSupport::TestCase
  self.use_transactional_tests = false

  test 'the migration reverts and re-applies' do
    context = ActiveRecord::MigrationContext.new(ForemanPvc::Engine.paths['db/migrate'].existent,
                                                 ActiveRecord::SchemaMigration)
    context.down(0)
    BootTest::TABLES.each { |t| refute ActiveRecord::Base.connection.table_exists?(t), "#{t} left behind" }
    assert ActiveRecord::Base.connection.table_exists?('hosts'), "Foreman's tables must stay"
  ensure
    context&.up
    # the tables are new objects: forget what was cached about the old ones
    ActiveRecord::Base.connection.schema_cache.clear!
    [ForemanPvc::StagedRollout, ForemanPvc::Wave, ForemanPvc::WaveHost,
     ForemanPvc::Transition].each(&:reset_column_information)
    BootTest::TABLES.each { |t| assert ActiveRecord::Base.connection.table_exists?(t), "#{t} not restored" }
  end
end
