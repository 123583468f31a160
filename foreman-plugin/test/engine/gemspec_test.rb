# frozen_string_literal: true

require 'test_helper'

# Foreman finds plugins by the gemspec's marker; a file left out of the gem
# would be missing only after installation.
class GemspecTest < ActiveSupport::TestCase
  SPEC = Gem::Specification.load(ForemanPvc::Engine.root.join('foreman_pvc.gemspec').to_s)

  test 'is marked as a Foreman plugin, at the version the code says' do
    assert_equal 'true', SPEC.metadata['is_foreman_plugin']
    assert_equal ForemanPvc::VERSION, SPEC.version.to_s
  end

  test 'ships every file Foreman loads' do
    root = ForemanPvc::Engine.root
    needed = Dir.chdir(root) { Dir['{app,config,db,lib,locale}/**/*'].select { |f| File.file?(f) } }
    assert_includes needed, 'lib/foreman_pvc/register.rb'
    assert_empty needed - SPEC.files
    assert_empty SPEC.files.grep(%r{\Atest/}), 'tests do not belong in the gem'
  end
end
