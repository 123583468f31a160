# frozen_string_literal: true

require 'test_helper'

# The pages render only inside Foreman (its layout and helpers); here they
# are compiled, so a syntax error is caught before anyone installs them.
class ViewsTest < ActiveSupport::TestCase
  VIEWS = Dir[ForemanPvc::Engine.root.join('app/views/**/*.erb')].sort

  test 'there are list, new and show pages' do
    assert_equal %w[index new show], VIEWS.map { |v| File.basename(v, '.html.erb') }.sort
  end

  VIEWS.each do |path|
    test "#{File.basename(path)} compiles" do
      source = ActionView::Template::Handlers::ERB::Erubi.new(File.read(path)).src
      assert RubyVM::InstructionSequence.compile(source, path)
    end
  end
end

class HostsHelperExtensionsTest < ActiveSupport::TestCase
  Host = Struct.new(:allowed, :path) do
    include ForemanPvc::HostsHelperExtensions

    def authorized_for(options)
      allowed && options == { controller: 'foreman_pvc/rollouts', action: 'new' }
    end

    def foreman_pvc
      Struct.new(:new_rollout_path).new(path)
    end

    def _(text)
      text
    end
  end

  test 'the bulk action opens the new rollout form, for those who may create rollouts' do
    actions = Host.new(true, '/foreman_pvc/rollouts/new').pvc_rollout_multiple_actions
    assert_equal [['Start rollout for selected hosts', '/foreman_pvc/rollouts/new', false]], actions.map { |a|
                                                                                               a[:action]
                                                                                             }
    assert_empty Host.new(false, '/x').pvc_rollout_multiple_actions
  end
end

# Everything under app/ that does not subclass a Foreman class loads by
# its file name (Rails' autoloader in production loads them all).
class AutoloadTest < ActiveSupport::TestCase
  FOREMAN_ONLY = %w[app/controllers/api/v2/pvc_rollouts_controller.rb
                    app/controllers/foreman_pvc/rollouts_controller.rb].freeze

  test 'app files define the constant their path names' do
    root = ForemanPvc::Engine.root
    files = Dir.chdir(root) { Dir['app/**/*.rb'] } - FOREMAN_ONLY
    assert_operator files.size, :>=, 14
    files.each do |file|
      name = file.sub(%r{\Aapp/[^/]+/(concerns/)?}, '').delete_suffix('.rb').camelize
      assert name.constantize, file
    end
  end
end
